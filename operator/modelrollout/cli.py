"""`kubectl modelrollout` - see and steer ModelRollouts (installed as `kubectl-modelrollout`).

    kubectl modelrollout list [-A] [-o wide|json|yaml]
    kubectl modelrollout get fraud [-o json|yaml]          # status, versions, Deployments, pods
    kubectl modelrollout status fraud [--watch] [--timeout 10m]
    kubectl modelrollout set model fraud --version 3 --uri https://... [--digest sha256:...]
    kubectl modelrollout promote fraud [--full]
    kubectl modelrollout abort|retry|pause|resume|undo fraud
    kubectl modelrollout version

`status --timeout` waits for the rollout to finish: exit 0 when the spec's version is promoted
(Healthy), 1 when it is rolled back or failed, 2 when the timeout passes first (for CI pipelines).
Commands are written as annotations (modelrollout.dev/command + a fresh command-id), which the
operator handles exactly once; only `set model` changes the spec.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
import uuid
from collections.abc import Iterator
from importlib import metadata
from typing import Any

import kubernetes
import urllib3
import yaml

from modelrollout.core.commands import COMMAND_ANNOTATION, COMMAND_ID_ANNOTATION
from modelrollout.core.observations import LABEL_ROLLOUT, LABEL_VERSION
from modelrollout.durations import parse_duration
from modelrollout.kube import GROUP, PLURAL, VERSION

COMMANDS = ("promote", "abort", "retry", "pause", "resume", "undo")
MERGE_PATCH = "application/merge-patch+json"
EXIT_ROLLED_BACK, EXIT_TIMEOUT = 1, 2


class Cluster:
    """The API clients for one kubeconfig/context."""

    def __init__(self, args: argparse.Namespace) -> None:
        kubernetes.config.load_kube_config(config_file=args.kubeconfig, context=args.context)
        self.custom = kubernetes.client.CustomObjectsApi()
        self.apps = kubernetes.client.AppsV1Api()
        self.core = kubernetes.client.CoreV1Api()
        self.namespace = args.namespace or _context_namespace(args)

    def rollout(self, name: str) -> dict[str, Any]:
        found: dict[str, Any] = self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, PLURAL, name)
        return found


def _context_namespace(args: argparse.Namespace) -> str:
    _, current = kubernetes.config.list_kube_config_contexts(config_file=args.kubeconfig)
    return str(current.get("context", {}).get("namespace") or "default")


def send_command(api: kubernetes.client.CustomObjectsApi, namespace: str, name: str, command: str) -> str:
    command_id = uuid.uuid4().hex[:12]
    patch = {"metadata": {"annotations": {COMMAND_ANNOTATION: command, COMMAND_ID_ANNOTATION: command_id}}}
    api.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name, patch, _content_type=MERGE_PATCH)
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
    lines += render_validation(st.get("validation"))
    lines += render_shadow(st.get("shadow"))
    lines += render_drift(st.get("drift"))
    lines += render_retrain(st.get("retrain"))
    lines += render_ab_test(st.get("abTest"))
    for h in (st.get("history") or [])[-5:]:
        lines.append(f"History:     v{h['version']} {h['outcome']} at {h.get('finishedAt')}: {h.get('reason', '')}")
    return "\n".join(lines)


def _num(value: Any) -> str:
    return "-" if value is None else f"{value:.4g}"


def render_validation(run: dict[str, Any] | None) -> list[str]:
    """status.validation as a table: each check with candidate, stable, threshold and verdict.

    >>> for line in render_validation({"version": "2", "state": "Failed", "job": "j", "message": "m",
    ...     "checks": [{"name": "minAccuracy", "subject": "overall", "verdict": "Fail", "candidate": 0.48,
    ...                 "stable": 0.9, "threshold": 0.8}]}): print(line)
    Validation:  v2 Failed (Job j): m
      CHECK                  SUBJECT          CANDIDATE  STABLE     THRESHOLD  VERDICT
      minAccuracy            overall          0.48       0.9        0.8        Fail
    """
    if not run:
        return []
    lines = [f"Validation:  v{run.get('version')} {run.get('state')} (Job {run.get('job')}): {run.get('message', '')}"]
    checks = run.get("checks") or []
    if checks:
        lines.append(f"  {'CHECK':<22} {'SUBJECT':<16} {'CANDIDATE':<10} {'STABLE':<10} {'THRESHOLD':<10} VERDICT")
    for c in checks:
        lines.append(f"  {c.get('name', ''):<22} {c.get('subject', ''):<16} {_num(c.get('candidate')):<10} "
                     f"{_num(c.get('stable')):<10} {_num(c.get('threshold')):<10} {c.get('verdict', '')}")
    return lines


def render_shadow(run: dict[str, Any] | None) -> list[str]:
    """status.shadow: the stage, the pairs counted so far and each check's verdict.

    >>> for line in render_shadow({"version": "2", "stage": "Mirroring", "looks": 3, "counts": {"agree": 950,
    ...     "disagree": 50, "bothRight": 400, "stableOnly": 30, "candidateOnly": 5, "bothWrong": 15},
    ...     "results": [{"name": "agreement", "verdict": "Pass", "message": "agreement 95.0%"}]}): print(line)
    Shadow:      v2 Mirroring, look 3: 1,000 mirrored rows compared (95.0% agree), 450 labelled pairs
      discordant: 30 only stable right, 5 only the candidate right
      Pass         agreement: agreement 95.0%
    """
    if not run:
        return []
    counts = run.get("counts") or {}
    compared = counts.get("agree", 0) + counts.get("disagree", 0)
    labelled = sum(counts.get(k, 0) for k in ("bothRight", "stableOnly", "candidateOnly", "bothWrong"))
    share = f" ({counts.get('agree', 0) / compared:.1%} agree)" if compared else ""
    lines = [f"Shadow:      v{run.get('version')} {run.get('stage')}, look {run.get('looks', 0)}: "
             f"{compared:,.0f} mirrored rows compared{share}, {labelled:,.0f} labelled pairs"]
    if labelled:
        lines.append(f"  discordant: {counts.get('stableOnly', 0):,.0f} only stable right, "
                     f"{counts.get('candidateOnly', 0):,.0f} only the candidate right")
    lines += [f"  {r['verdict']:<12} {r['name']}: {r.get('message', '')}" for r in run.get("results") or []]
    return lines


def render_drift(watch: dict[str, Any] | None) -> list[str]:
    """status.drift: one line per watched version, its drifted features first.

    >>> for line in render_drift({"lastLookAt": "2026-01-01T00:00:00Z", "versions": [{"version": "1",
    ...     "state": "Drifted", "message": "drifted: f3: PSI 0.410, ..."}, {"version": "2", "state": "NotJudged",
    ...     "message": "not judged: 12 live inputs in the window"}]}): print(line)
    Drift:       looked at 2026-01-01T00:00:00Z
      v1 Drifted      drifted: f3: PSI 0.410, ...
      v2 NotJudged    not judged: 12 live inputs in the window
    """
    if not watch:
        return []
    return [f"Drift:       looked at {watch.get('lastLookAt', '-')}"] + [
        f"  v{v.get('version')} {v.get('state', ''):<12} {v.get('message', '')}" for v in watch.get("versions") or []]


def render_retrain(run: dict[str, Any] | None) -> list[str]:
    """status.retrain in one line.

    >>> render_retrain({"job": "fraud-retrain-1", "state": "Succeeded", "runs": 1, "message": "Job ... succeeded"})
    ['Retrain:     Job fraud-retrain-1 Succeeded (run 1): Job ... succeeded']
    """
    if not run:
        return []
    job = f"Job {run.get('job')} {run.get('state')} (run {run.get('runs', 1)})"
    return [f"Retrain:     {job}: {run.get('message', '')}"]
def render_ab_test(run: dict[str, Any] | None) -> list[str]:
    """status.abTest: each arm's samples and accuracy (or mean outcome), the winner so far and the numbers.

    >>> for line in render_ab_test({"version": "2", "looks": 9, "winner": "B", "split": 0.5, "shareB": 0.492,
    ...     "arms": {"A": {"samples": 1030, "total": 824}, "B": {"samples": 1000, "total": 920}},
    ...     "message": "B wins: B - A = +0.12 (95% always-valid interval [+0.08, +0.16])"}): print(line)
    A/B test:    v2 (B) against the stable version (A), look 9: winner B
      ARM  SAMPLES    ACCURACY   SHARE
      A    1,030      0.8        50.8%  (split 50.0% of pods)
      B    1,000      0.92       49.2%
      B wins: B - A = +0.12 (95% always-valid interval [+0.08, +0.16])
    """
    if not run:
        return []
    arms = run.get("arms") or {}
    share_b = run.get("shareB")
    goal = str(run.get("goal", "accuracy"))
    heading = "ACCURACY" if goal == "accuracy" else f"MEAN {goal.upper()}"
    width = max(10, len(heading) + 1)
    lines = [f"A/B test:    v{run.get('version')} (B) against the stable version (A), look {run.get('looks', 0)}: "
             f"winner {run.get('winner', 'none')}",
             f"  {'ARM':<4} {'SAMPLES':<10} {heading:<{width}} SHARE"]
    for arm, share in (("A", None if share_b is None else 1 - share_b), ("B", share_b)):
        totals = arms.get(arm) or {}
        n = totals.get("samples", 0)
        split = f"  (split {run.get('split', 0):.1%} of pods)" if arm == "A" else ""
        lines.append(f"  {arm:<4} {n:<10,.0f} {_num(totals.get('total', 0) / n if n else None):<{width}} "
                     f"{'-' if share is None else f'{share:.1%}'}{split}")
    if run.get("message"):
        lines.append(f"  {run['message']}")
    return lines


def _age(stamp: str | None) -> str:
    if not stamp:
        return "-"
    seconds = int((dt.datetime.now(dt.UTC) - dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{max(seconds, 0)}s"


def render_table(items: list[dict[str, Any]], all_namespaces: bool, wide: bool) -> str:
    """`list`: one line per rollout, like `kubectl get`."""
    header = [*(["NAMESPACE"] if all_namespaces else []), "NAME", "MODEL", "STABLE", "CANARY", "WEIGHT", "PHASE",
              *(["REASON"] if wide else []), "AGE"]
    rows = [header]
    for obj in items:
        st, spec, meta = obj.get("status") or {}, obj.get("spec") or {}, obj["metadata"]
        weight = "-" if st.get("desiredWeight") is None else f"{st['desiredWeight']}%"
        rows.append([*([meta["namespace"]] if all_namespaces else []), meta["name"],
                     str((spec.get("model") or {}).get("name", "-")), _fmt(st.get("stableVersion")),
                     _fmt(st.get("canaryVersion")), weight, _fmt(st.get("phase")),
                     *([_fmt(st.get("reason"))] if wide else []), _age(meta.get("creationTimestamp"))])
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return "\n".join("   ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows)


def render_tree(obj: dict[str, Any], deployments: list[Any], pods: list[Any]) -> str:
    """`get`: the status, then each version's Deployment and its pods."""
    st = obj.get("status") or {}
    roles = {st.get("stableVersion"): "stable", st.get("canaryVersion"): "canary"}
    lines = [render_status(obj), "Versions:"]
    for d in sorted(deployments, key=lambda d: d.metadata.labels.get(LABEL_VERSION, "")):
        version = d.metadata.labels.get(LABEL_VERSION, "?")
        role = roles.get(version, "old")
        lines.append(f"  v{version} ({role})  deployment/{d.metadata.name}  "
                     f"{d.status.ready_replicas or 0}/{d.spec.replicas or 0} ready")
        for p in sorted((p for p in pods if (p.metadata.labels or {}).get(LABEL_VERSION) == version),
                        key=lambda p: p.metadata.name):
            ready = any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
            restarts = sum(c.restart_count or 0 for c in p.status.container_statuses or [])
            lines.append(f"    pod/{p.metadata.name}  {'Ready' if ready else p.status.phase or 'Pending'}"
                         f"  restarts {restarts}")
    if not deployments:
        lines.append("  (no Deployments)")
    return "\n".join(lines)


def dump(obj: Any, output: str) -> str:
    return json.dumps(obj, indent=2, default=str) if output == "json" else yaml.safe_dump(obj, sort_keys=False)


def outcome(obj: dict[str, Any]) -> int | None:
    """For `status --timeout`: 0 promoted, 1 rolled back / failed, None still going."""
    st = obj.get("status") or {}
    wanted = ((obj.get("spec") or {}).get("model") or {}).get("version")
    if st.get("observedGeneration") != obj["metadata"].get("generation"):
        return None  # the operator has not looked at this spec yet
    if st.get("phase") == "Healthy" and st.get("stableVersion") == wanted:
        return 0
    if st.get("phase") in ("RolledBack", "Failed"):
        return EXIT_ROLLED_BACK
    return None


def _watch(cluster: Cluster, name: str, deadline: float | None) -> Iterator[dict[str, Any]]:
    """The rollout, then each change of it, from a watch (not polling); reconnects until the deadline."""
    while deadline is None or time.monotonic() < deadline:
        listed = cluster.custom.list_namespaced_custom_object(GROUP, VERSION, cluster.namespace, PLURAL,
                                                              field_selector=f"metadata.name={name}")
        if not listed["items"]:
            raise kubernetes.client.ApiException(status=404, reason="Not Found")
        yield listed["items"][0]
        left = None if deadline is None else max(1, int(deadline - time.monotonic()))
        stream = kubernetes.watch.Watch().stream(
            cluster.custom.list_namespaced_custom_object, GROUP, VERSION, cluster.namespace, PLURAL,
            field_selector=f"metadata.name={name}", resource_version=listed["metadata"]["resourceVersion"],
            timeout_seconds=min(left or 300, 300))
        for event in stream:
            if event["type"] in ("ADDED", "MODIFIED"):
                yield event["object"]


def cmd_status(cluster: Cluster, args: argparse.Namespace) -> int:
    if not args.watch and args.timeout is None:
        obj = cluster.rollout(args.name)
        print(dump(obj.get("status") or {}, args.output) if args.output else render_status(obj))
        return 0
    deadline = None if args.timeout is None else time.monotonic() + parse_duration(args.timeout, "--timeout")
    last = None
    for obj in _watch(cluster, args.name, deadline):
        view = render_status(obj)
        if view != last:
            print(view + "\n", flush=True)
            last = view
        done = outcome(obj)
        if args.timeout is not None and done is not None:
            return done
    print(f"error: modelrollout {cluster.namespace}/{args.name} did not finish within {args.timeout}", file=sys.stderr)
    return EXIT_TIMEOUT


def cmd_list(cluster: Cluster, args: argparse.Namespace) -> int:
    if args.all_namespaces:
        items = cluster.custom.list_cluster_custom_object(GROUP, VERSION, PLURAL)["items"]
    else:
        items = cluster.custom.list_namespaced_custom_object(GROUP, VERSION, cluster.namespace, PLURAL)["items"]
    items.sort(key=lambda o: (o["metadata"]["namespace"], o["metadata"]["name"]))
    if args.output in ("json", "yaml"):
        print(dump({"apiVersion": "v1", "kind": "List", "items": items}, args.output))
    elif items:
        print(render_table(items, args.all_namespaces, args.output == "wide"))
    else:
        where = "any namespace" if args.all_namespaces else f"namespace {cluster.namespace}"
        print(f"No ModelRollouts found in {where}.", file=sys.stderr)
    return 0


def cmd_get(cluster: Cluster, args: argparse.Namespace) -> int:
    obj = cluster.rollout(args.name)
    if args.output:
        print(dump(obj, args.output))
        return 0
    selector = f"{LABEL_ROLLOUT}={args.name}"
    deployments = cluster.apps.list_namespaced_deployment(cluster.namespace, label_selector=selector).items
    pods = cluster.core.list_namespaced_pod(cluster.namespace, label_selector=selector).items
    print(render_tree(obj, deployments, pods))
    return 0


def cmd_set_model(cluster: Cluster, args: argparse.Namespace) -> int:
    model: dict[str, Any] = {"version": args.version, "uri": args.uri}
    if args.digest:
        model["digest"] = args.digest
    cluster.custom.patch_namespaced_custom_object(GROUP, VERSION, cluster.namespace, PLURAL, args.name,
                                                  {"spec": {"model": model}}, _content_type=MERGE_PATCH)
    print(f"modelrollout/{args.name}: model set to version {args.version}")
    return 0


def cmd_command(cluster: Cluster, args: argparse.Namespace) -> int:
    command = "promote-full" if args.command == "promote" and args.full else args.command
    command_id = send_command(cluster.custom, cluster.namespace, args.name, command)
    print(f"modelrollout/{args.name}: {command} requested (command-id {command_id})")
    return 0


def _version() -> str:
    """The installed distribution's version: modelrollout-operator as users install it (pipx, krew's
    launcher, the image), modelrollout in the development checkout."""
    for distribution in ("modelrollout-operator", "modelrollout"):
        try:
            return metadata.version(distribution)
        except metadata.PackageNotFoundError:
            continue
    return "unknown"


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-n", "--namespace", help="namespace (default: the context's)")
    common.add_argument("--kubeconfig", help="kubeconfig file (default: KUBECONFIG or ~/.kube/config)")
    common.add_argument("--context", help="kubeconfig context")
    parser = argparse.ArgumentParser(prog="kubectl modelrollout", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    # Not `required`: argparse would then report a missing COMMAND before an unknown flag (main).
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser("list", parents=[common], help="list rollouts")
    p.add_argument("-A", "--all-namespaces", action="store_true", help="in every namespace")
    p.add_argument("-o", "--output", choices=("wide", "json", "yaml"))
    p = sub.add_parser("get", parents=[common], help="a rollout with its versions, Deployments and pods")
    p.add_argument("name")
    p.add_argument("-o", "--output", choices=("json", "yaml"))
    p = sub.add_parser("status", parents=[common], help="a rollout's status; --timeout waits for the outcome")
    p.add_argument("name")
    p.add_argument("-w", "--watch", action="store_true", help="print each change (a watch, not polling)")
    p.add_argument("--timeout", help="wait for the outcome this long (e.g. 10m): exit 0 promoted, 1 rolled "
                                     "back or failed, 2 timed out")
    p.add_argument("-o", "--output", choices=("json", "yaml"), help="print the status object")
    p = sub.add_parser("set", help="change a rollout's spec")
    what = p.add_subparsers(dest="what", required=True, metavar="WHAT")
    m = what.add_parser("model", parents=[common], help="roll out another model version")
    m.add_argument("name")
    m.add_argument("--version", required=True)
    m.add_argument("--uri", required=True)
    m.add_argument("--digest", help="sha256:<hex> of the model file")
    for command in COMMANDS:
        p = sub.add_parser(command, parents=[common], help=f"{command} the rollout")
        p.add_argument("name")
        if command == "promote":
            p.add_argument("--full", action="store_true", help="skip every remaining step")
    sub.add_parser("version", help="the plugin's version")
    return parser


HANDLERS = {"list": cmd_list, "get": cmd_get, "status": cmd_status, "set": cmd_set_model,
            **dict.fromkeys(COMMANDS, cmd_command)}


def main(argv: list[str] | None = None) -> None:
    parser = _parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # named first: `--bogus` alone is a bad flag, not a missing command
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if args.command is None:
        parser.error("the following arguments are required: COMMAND (see --help)")
    if args.command == "version":
        print(f"kubectl-modelrollout {_version()}")
        return
    try:
        sys.exit(run(args))
    except kubernetes.config.ConfigException as exc:
        sys.exit(f"error: no usable kubeconfig ({first_line(exc)}); set --kubeconfig, KUBECONFIG or --context")
    except urllib3.exceptions.MaxRetryError as exc:
        sys.exit(f"error: cannot reach the API server at {exc.pool.host}:{exc.pool.port} ({first_line(exc.reason)});"
                 " is the cluster running, and does the kubeconfig's context (--context) point at it?")
    except ValueError as exc:
        sys.exit(f"error: {exc}")
    except KeyboardInterrupt:  # the way to leave --watch; nothing to report
        sys.exit(130)


def first_line(exc: BaseException | None) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def run(args: argparse.Namespace) -> int:
    cluster = Cluster(args)
    try:
        return HANDLERS[args.command](cluster, args)
    except kubernetes.client.ApiException as exc:
        target = f"modelrollout {cluster.namespace}/{args.name}" if getattr(args, "name", None) else "modelrollouts"
        sys.exit(f"error: {exc.status} {exc.reason}: {target}")


if __name__ == "__main__":
    main()
