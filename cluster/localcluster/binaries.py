"""Where the control-plane binaries are: KUBEBUILDER_ASSETS (the envtest convention) or the
per-version cache that hack/build-k8s.sh fills; and the Gateway API data plane (Traefik and the
Gateway API CRDs) that hack/build-gateway.sh puts in the same cache."""

from __future__ import annotations

import os
from pathlib import Path

K8S_VERSION = os.environ.get("K8S_VERSION", "v1.36.3")
REQUIRED = ("etcd", "kube-apiserver", "kube-controller-manager", "kubectl", "helm")
TRAEFIK_VERSION = os.environ.get("TRAEFIK_VERSION", "v3.6.12")  # keep equal to hack/build-gateway.sh


class MissingBinaryError(RuntimeError):
    """A binary the local cluster needs is not there; the message says how to get it."""


def cache_root() -> Path:
    return Path(os.environ.get("MODELROLLOUT_CACHE", Path.home() / ".cache" / "modelrollout"))


def bin_dir() -> Path:
    """The folder holding every binary in REQUIRED, or MissingBinaryError naming what is missing."""
    candidates = []
    if os.environ.get("KUBEBUILDER_ASSETS"):
        candidates.append(Path(os.environ["KUBEBUILDER_ASSETS"]))
    candidates.append(cache_root() / f"k8s-{K8S_VERSION}" / "bin")
    for folder in candidates:
        if all((folder / name).is_file() and os.access(folder / name, os.X_OK) for name in REQUIRED):
            return folder
    missing = [n for n in REQUIRED if not (candidates[-1] / n).is_file()]
    raise MissingBinaryError(
        f"control-plane binaries missing in {candidates[-1]}: {', '.join(missing)}. "
        "Run `make k8s-bins` (builds them from Go modules) or set KUBEBUILDER_ASSETS to a folder "
        f"holding {', '.join(REQUIRED)}."
    )


def binary(name: str) -> Path:
    return bin_dir() / name


PROMETHEUS_VERSION = os.environ.get("PROMETHEUS_VERSION", "v0.316.0")  # the Go module version (Prometheus 3.16.0)
PROMETHEUS_BINARIES = ("prometheus", "promtool")


def prometheus_bin_dir() -> Path:
    """Where hack/build-prometheus.sh puts prometheus and promtool (nothing is checked here)."""
    return cache_root() / f"prometheus-{PROMETHEUS_VERSION}" / "bin"


def prometheus_binary(name: str) -> Path:
    """prometheus or promtool, or MissingBinaryError saying how to build them."""
    path = prometheus_bin_dir() / name
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise MissingBinaryError(f"{path} is missing. Run `make prom-bins` (builds prometheus and promtool "
                                 f"{PROMETHEUS_VERSION} from Go modules).")
    return path


def gateway_dir() -> Path:
    return cache_root() / f"traefik-{TRAEFIK_VERSION}"


def traefik_path() -> Path:
    """Where the Traefik binary is expected (it may not be built yet: see `traefik()`)."""
    return gateway_dir() / "bin" / "traefik"


def traefik() -> Path:
    """The Traefik binary, or MissingBinaryError saying how to build it."""
    path = traefik_path()
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise MissingBinaryError(f"Traefik {TRAEFIK_VERSION} missing at {path}: run `make gateway-bins` "
                                 "(builds it from Go modules, with the Gateway API CRDs)")
    return path


def gateway_crds() -> Path:
    """The folder of Gateway API CRD manifests (standard channel), or MissingBinaryError."""
    folder = gateway_dir() / "crds"
    if not any(folder.glob("gateway.networking.k8s.io_*.yaml")):
        raise MissingBinaryError(f"Gateway API CRDs missing in {folder}: run `make gateway-bins`")
    return folder


MLSERVER_VERSION = os.environ.get("MLSERVER_VERSION", "1.7.1")  # keep equal to hack/build-mlserver.sh


def mlserver_path() -> Path:
    """Where hack/build-mlserver.sh installs MLServer's `mlserver` command (nothing is checked here)."""
    return cache_root() / f"mlserver-{MLSERVER_VERSION}" / "venv" / "bin" / "mlserver"


def mlserver_binary() -> Path:
    """The `mlserver` command, or MissingBinaryError saying how to install it."""
    path = mlserver_path()
    if not (path.is_file() and os.access(path, os.X_OK)):
        raise MissingBinaryError(f"{path} is missing. Run `make mlserver-bins` (installs MLServer "
                                 f"{MLSERVER_VERSION} and mlserver-sklearn into a virtualenv of their own).")
    return path


KSERVE_VERSION = os.environ.get("KSERVE_VERSION", "0.21.0")  # keep equal to hack/build-kserve.sh


def kserve_python_path() -> Path:
    """The python of the virtualenv hack/build-kserve.sh installs kserve into (nothing is checked here)."""
    return cache_root() / f"kserve-{KSERVE_VERSION}" / "venv" / "bin" / "python"


def kserve_python() -> Path:
    """kserve's virtualenv python, or MissingBinaryError saying how to install it."""
    path = kserve_python_path()
    if not (path.is_file() and (path.parent.parent / ".installed").is_file()):
        raise MissingBinaryError(f"{path} is missing. Run `make kserve-bins` (installs kserve {KSERVE_VERSION} "
                                 "and scikit-learn into a virtualenv of their own).")
    return path
