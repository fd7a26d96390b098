"""A KServe custom predictor for scikit-learn models: `kserve.Model` + `kserve.ModelServer` (the `kserve`
package, 0.21.0), written the way KServe's own sklearnserver is (kserve/python/sklearnserver in the KServe
repository; that package is not on PyPI): load one joblib/pickle file, answer V1
(`/v1/models/<name>:predict`) and V2 / Open Inference Protocol (`/v2/models/<name>/infer`) REST, gRPC,
and `/metrics` on the HTTP port, all served by kserve itself.

Where it differs from sklearnserver, and why:

* It is configured by the environment the operator gives every serving pod (MODEL_NAME, MODEL_URI,
  PORT; `spec.serving` sets no container arguments), as well as by sklearnserver's flags
  (`--model_name`, `--model_dir`, `--http_port`), which win when given.
* MODEL_URI may be a file, a folder holding exactly one model file (sklearnserver's rule), or an
  http(s) URL of the file (sklearnserver downloads through kserve-storage, which this image leaves out).
* MODEL_DIGEST, when set (`spec.model.digest`), must be the file's sha256: a joblib file runs code when
  loaded, so the image refuses a file other than the one named.

    python predictor.py                          # MODEL_NAME, MODEL_URI, PORT from the environment
    python predictor.py --model_name iris --model_dir /mnt/models --http_port 8080
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import sys
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import joblib
import kserve
from kserve.errors import InferenceError, ModelMissingError
from kserve.utils.utils import get_predict_input, get_predict_response

MODEL_SUFFIXES = (".joblib", ".pkl", ".pickle")  # sklearnserver's
log = logging.getLogger("kserve-sklearn-predictor")


def local_model_file(uri: str, download_dir: Path) -> Path:
    """The model file MODEL_URI names: downloaded when it is an http(s) URL, found when it is a folder."""
    if urllib.parse.urlparse(uri).scheme in ("http", "https"):
        target = download_dir / Path(urllib.parse.urlparse(uri).path).name
        with urllib.request.urlopen(uri, timeout=60) as response, target.open("wb") as out:
            out.write(response.read())
        return target
    path = Path(uri)
    if path.is_dir():
        files = [p for p in sorted(path.iterdir()) if p.is_file() and p.suffix in MODEL_SUFFIXES]
        if not files:
            raise ModelMissingError(f"{path}: no {'/'.join(MODEL_SUFFIXES)} file")
        if len(files) > 1:
            raise RuntimeError(f"{path}: more than one model file ({', '.join(p.name for p in files)}); "
                               "only one is allowed")
        return files[0]
    if not path.is_file():
        raise ModelMissingError(str(path))
    return path


def check_digest(path: Path, digest: str | None) -> None:
    if not digest:
        log.warning("MODEL_DIGEST is not set: loading %s (a pickle runs code when loaded) unverified", path.name)
        return
    actual = hashlib.sha256(path.read_bytes()).hexdigest()
    if actual != digest.removeprefix("sha256:"):
        raise RuntimeError(f"{path.name}: sha256 {actual} is not MODEL_DIGEST {digest}")


class SKLearnModel(kserve.Model):
    """One scikit-learn estimator behind kserve's data plane (which times predict into request_predict_seconds)."""

    def __init__(self, name: str, uri: str, digest: str | None) -> None:
        super().__init__(name)
        self.uri, self.digest = uri, digest
        self._model: Any = None

    def load(self) -> bool:
        with tempfile.TemporaryDirectory() as download_dir:
            path = local_model_file(self.uri, Path(download_dir))
            check_digest(path, self.digest)
            self._model = joblib.load(path)
        self.ready = True
        return self.ready

    def predict(self, payload: Any, headers: dict[str, str] | None = None) -> Any:
        try:
            instances = get_predict_input(payload)
            return get_predict_response(payload, self._model.predict(instances), self.name)
        except Exception as e:  # sklearnserver's answer to a failing model: a 500 naming the error
            raise InferenceError(str(e)) from e


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(parents=[kserve.model_server.parser])
    parser.add_argument("--model_dir", help="the model file, a folder holding one, or an http(s) URL of it")
    parser.set_defaults(model_name=os.environ.get("MODEL_NAME", "model"), model_dir=os.environ.get("MODEL_URI"),
                        http_port=int(os.environ.get("PORT", "8080")))
    args, _ = parser.parse_known_args(argv)
    if not args.model_dir:
        parser.error("the model: --model_dir or MODEL_URI")
    return args


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    model = SKLearnModel(args.model_name, args.model_dir, os.environ.get("MODEL_DIGEST"))
    model.load()
    kserve.ModelServer(http_port=args.http_port).start([model])


if __name__ == "__main__":
    main(sys.argv[1:])
