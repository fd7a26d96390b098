"""The node's "image registry": which local program a container image stands for.

There is no container runtime here, so an image is a name for a command line. Matching is on the
repository path without registry host and tag, so `ghcr.io/modelrollout/modelserver:0.1.0` and
`modelrollout/modelserver:dev` both run the model server from this checkout's virtualenv.

| repository suffix          | entrypoint (replaced by `command`) | default args (replaced by `args`) |
|----------------------------|------------------------------------|-----------------------------------|
| modelrollout/modelserver   | python -m modelserver              | -                                 |
| modelrollout/modelserver-testing | python -m modelserver_testing (the server with MODELSERVER_CHAOS_* faults) | - |
| modelrollout/operator      | python -m modelrollout             | -                                 |
| localcluster/python        | python                             | - (tests pass -c / -m)            |
| localcluster/prometheus    | prometheus (hack/build-prometheus.sh) | - (localcluster.prometheus passes them) |
| traefik (Docker Hub)       | traefik, built by hack/build-gateway.sh | - (pods pass flags)          |
| seldonio/mlserver          | mlserver (hack/build-mlserver.sh), on the pod IP | start . (MLSERVER_MODEL_* env) |
| modelrollout/kserve-sklearn-predictor | examples/kserve/predictor.py on kserve (build-kserve.sh) | - (MODEL_* env) |
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from localcluster.binaries import kserve_python_path, mlserver_path, prometheus_bin_dir, traefik_path

ROOT = Path(__file__).resolve().parents[2]
KSERVE_POD = Path("cluster", "localcluster", "kservepod.py")


@dataclass(frozen=True)
class Image:
    entrypoint: tuple[str, ...]
    default_args: tuple[str, ...] = ()


def _python() -> str:
    return sys.executable


REGISTRY: dict[str, Image] = {
    "modelrollout/modelserver": Image((_python(), "-m", "modelserver")),
    # The tests' faulty model versions: the same server wrapped by the test-only fault injection, which the
    # real image does not carry (serving/modelserver_testing).
    "modelrollout/modelserver-testing": Image((_python(), "-m", "modelserver_testing")),
    "modelrollout/operator": Image((_python(), "-m", "modelrollout")),
    "localcluster/python": Image((_python(),)),
    # The binary from the cache; a pod of it fails to start, saying so in its log, until `make prom-bins` ran.
    "localcluster/prometheus": Image((str(prometheus_bin_dir() / "prometheus"),)),
    # The Gateway API data plane (a pod whose process is the cached build; absent until built).
    "traefik": Image((str(traefik_path()),)),
    "library/traefik": Image((str(traefik_path()),)),
    # MLServer 1.7.1 from its own virtualenv. All pods share one network namespace here, so it binds the
    # pod's IP (HOST), as the real image binds 0.0.0.0 in a namespace of its own; `start .` with no
    # model-settings.json in the working folder loads the model its MLSERVER_MODEL_* variables describe.
    "seldonio/mlserver": Image(("/bin/sh", "-c", 'export MLSERVER_HOST="${MLSERVER_HOST:-$HOST}"; exec "$0" "$@"',
                                str(mlserver_path())), ("start", ".")),
    # The KServe custom predictor of examples/kserve (its Dockerfile builds the same image for a real
    # cluster) in kserve's own virtualenv; kservepod.py binds kserve's servers to the pod's IP, which
    # kserve has no setting for.
    "modelrollout/kserve-sklearn-predictor": Image((str(kserve_python_path()), str(ROOT / KSERVE_POD),
                                                    str(ROOT / "examples" / "kserve" / "predictor.py"))),
}


class UnknownImageError(LookupError):
    pass


def repository(image: str) -> str:
    """`ghcr.io/org/name:tag@sha256:...` -> `org/name` (host and tag dropped).

    >>> repository("ghcr.io/modelrollout/modelserver:0.1.0")
    'modelrollout/modelserver'
    """
    name = image.split("@", 1)[0]
    last = name.rsplit("/", 1)
    if ":" in last[-1]:
        name = name[: name.rfind(":")]
    parts = name.split("/")
    if len(parts) > 2 and ("." in parts[0] or ":" in parts[0] or parts[0] == "localhost"):
        parts = parts[1:]
    return "/".join(parts[-2:])


def resolve(image: str) -> Image:
    try:
        return REGISTRY[repository(image)]
    except KeyError:
        known = ", ".join(sorted(REGISTRY))
        raise UnknownImageError(
            f'image "{image}" is not in the local cluster\'s image registry (known: {known})'
        ) from None


def command_line(image: str, command: list[str] | None, args: list[str] | None) -> list[str]:
    """Kubernetes semantics: `command` replaces the entrypoint, `args` replaces the default args."""
    spec = resolve(image)
    entry = list(command) if command else list(spec.entrypoint)
    return entry + (list(args) if args is not None else ([] if command else list(spec.default_args)))
