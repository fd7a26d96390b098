"""`kubectl modelrollout` - manual control of ModelRollouts (installed as `kubectl-modelrollout`).

    kubectl modelrollout status fraud [-n ml] [--watch]
    kubectl modelrollout promote fraud [--full]
    kubectl modelrollout abort|retry|pause|resume|undo fraud

Commands are written as annotations (modelrollout.dev/command + a fresh command-id), which the
operator handles exactly once. Spec is never touched, so a GitOps tool that owns spec is not fought.
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from typing import Any

import kubernetes
import urllib3

from modelrollout.core.commands import COMMAND_ANNOTATION, COMMAND_ID_ANNOTATION
from modelrollout.kube import GROUP, PLURAL, VERSION

COMMANDS = ("promote", "abort", "retry", "pause", "resume", "undo")


def _api(args: argparse.Namespace) -> kubernetes.client.CustomObjectsApi:
    kubernetes.config.load_kube_config(config_file=args.kubeconfig, context=args.context)
    return kubernetes.client.CustomObjectsApi()


def _namespace(args: argparse.Namespace) -> str:
    if args.namespace:
        return str(args.namespace)
    _, current = kubernetes.config.list_kube_config_contexts(config_file=args.kubeconfig)
    return str(current.get("context", {}).get("namespace") or "default")


def send_command(api: kubernetes.client.CustomObjectsApi, namespace: str, name: str, command: str) -> str:
    command_id = uuid.uuid4().hex[:12]
    patch = {"metadata": {"annotations": {COMMAND_ANNOTATION: command, COMMAND_ID_ANNOTATION: command_id}}}
    api.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name, patch,
                                       _content_type="application/merge-patch+json")
    return command_id


def _fmt(value: Any, suffix: str = "") -> str:
    return "-" if value is None else f"{value}{suffix}"


def render_status(obj: dict[str, Any]) -> str:
    """A human view of one rollout: phase, versions, weights, per-metric verdicts, recent history."""
    st, spec = obj.get("status") or {}, obj.get("spec") or {}
    lines = [
        f"Name:        {obj['metadata']['name']}   (model {spec.get('model', {}).get('name', '?')})",
        f"Phase:       {_fmt(st.get('phase'))}  {st.get('reason', '')}",
        f"Message:     {st.get('message', '')}",
        f"Stable:      {_fmt(st.get('stableVersion'))}    Canary: {_fmt(st.get('canaryVersion'))}",
        f"Weight:      desired {_fmt(st.get('desiredWeight'), '%')}, effective {_fmt(st.get('effectiveWeight'), '%')}"
        f"   step {_fmt(st.get('currentStepIndex'))}",
    ]
    analysis = st.get("analysis") or {}
    if analysis.get("results"):
        lines.append(f"Analysis:    tick {analysis.get('ticks', 0)}, last verdict {analysis.get('lastVerdict')}")
        for r in analysis["results"]:
            lines.append(f"  {r['verdict']:<12} {r['name']}: {r.get('message', '')}")
    if analysis.get("sampleRatioWarning"):
        lines.append(f"  warning: {analysis['sampleRatioWarning']}")
    for h in (st.get("history") or [])[-5:]:
        lines.append(f"History:     v{h['version']} {h['outcome']} at {h.get('finishedAt')}: {h.get('reason', '')}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="kubectl modelrollout", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=("status", *COMMANDS))
    parser.add_argument("name")
    parser.add_argument("-n", "--namespace")
    parser.add_argument("--kubeconfig")
    parser.add_argument("--context")
    parser.add_argument("--full", action="store_true", help="promote: skip every remaining step")
    parser.add_argument("-w", "--watch", action="store_true", help="status: refresh every 2 seconds")
    args = parser.parse_args(argv)
    try:
        run(args)
    except kubernetes.config.ConfigException as exc:
        sys.exit(f"error: no usable kubeconfig ({first_line(exc)}); set --kubeconfig, KUBECONFIG or --context")
    except urllib3.exceptions.MaxRetryError as exc:
        sys.exit(f"error: cannot reach the API server at {exc.pool.host}:{exc.pool.port} ({first_line(exc.reason)})")
    except KeyboardInterrupt:  # the way to leave --watch; nothing to report
        sys.exit(130)


def first_line(exc: BaseException | None) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def run(args: argparse.Namespace) -> None:
    api, ns = _api(args), _namespace(args)
    try:
        if args.command == "status":
            while True:
                obj = api.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, args.name)
                print(render_status(obj), flush=True)
                if not args.watch:
                    return
                time.sleep(2)
                print()
        command = "promote-full" if args.command == "promote" and args.full else args.command
        command_id = send_command(api, ns, args.name, command)
        print(f"modelrollout/{args.name}: {command} requested (command-id {command_id})")
    except kubernetes.client.ApiException as exc:
        sys.exit(f"error: {exc.status} {exc.reason}: modelrollout {ns}/{args.name}")

if __name__ == "__main__":
    main()
