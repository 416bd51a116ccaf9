"""ONNX models following the project's contract, and the registry that serves them.

The contract (see README, "Model contract"): input ``uint8`` RGB NHWC ``[N, H, W, 3]``
at the model's declared size; the graph normalizes and applies softmax; the output is
probabilities ``[N, C]``; ``metadata_props`` carry ``labels`` (JSON list), ``resize``
(``center_crop`` | ``squash``), ``name``, ``version`` and ``task``, and ``sha``, the
file's content hash (:mod:`inference.identity`), which :meth:`Model.load` checks. A file with
this contract is all the functions need, so swapping models is copying a file.

Optionally a second output named ``embedding``: float ``[N, D]`` (D <= 2048), L2-normalized
in the graph, so the cosine similarity of two pictures is the dot product of their vectors;
``metadata_props["duplicate_threshold"]`` is the similarity from which this model's vectors
count as the same picture (measured, see docs/similarity.md). Models without it classify as
before and store no vectors.
"""

from __future__ import annotations

import json
import os
import platform
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from media_classifier import logs
from media_classifier.cpus import allocated_cpus
from media_classifier.inference import identity
from media_classifier.media.images import RESIZE_POLICIES

if TYPE_CHECKING:
    import numpy as np

#: Where the shipped models live, next to ``main.py``.
MODELS_DIR = Path(__file__).resolve().parents[2] / "models"
REQUIRED_METADATA = ("labels", "resize", "name", "version", "task")
#: The optional output with each picture's vector (see the module docstring).
EMBEDDING_OUTPUT = "embedding"
#: Firestore's vector search takes at most this many dimensions.
MAX_EMBEDDING_DIMS = 2048
#: ``metadata_props`` key of a file whose int8 matrix products take 7-bit activations, which
#: U8S8 kernels cannot saturate (``model_build narrow-inputs``); its value then is "7".
DENSE_INPUT_BITS_KEY = "int8_dense_input_bits"
#: ``metadata_props`` key and value of a file none of whose U8S8 weight pairs can saturate:
#: its 8-bit-input layers' channels are ordered so that neighbouring weights of one sign keep
#: ``|w0| + |w1| <= 128``, its other dense inputs have 7 bits (``model_build pair-order``).
U8S8_PAIRS_KEY, U8S8_PAIRS_VALUE = "int8_u8s8_pairs", "fit"
#: ``metadata_props`` key and value of a file whose activation scales are powers of two and
#: whose weight scales have 4 significant bits (``model_build dyadic-scales``): ONNX Runtime's
#: optimized execution of it computes the reference execution's numbers exactly.
INT8_SCALES_KEY, INT8_SCALES_DYADIC = "int8_scales", "dyadic"


class ModelContractError(ValueError):
    """The ONNX file does not follow the model contract."""


def verified_sha(path: Path, data: bytes, meta: dict[str, str]) -> str:
    """The file's identity: its content hash, which a stored ``sha`` must equal.

    Why refuse a mismatch rather than trust either value: a stored hash that differs from
    the content means the weights or the graph were edited after the file was stamped, so
    its results could not be told from the previous file's. A file that carries no hash
    (an ONNX file written by other tools) is served under its computed one.
    """
    try:
        actual = identity.content_sha(data)
    except identity.NotAModelFile as exc:
        raise ModelContractError(f"{path.name}: not an ONNX file: {exc}") from exc
    stored = meta.get(identity.SHA_KEY)
    if stored is not None and stored != actual:
        raise ModelContractError(
            f"{path.name}: metadata says sha {stored!r} but the content hashes to {actual!r}:"
            " the graph or weights changed after it was stamped; re-stamp it"
            " (python -m model_build stamp FILE) or re-export it"
        )
    return actual


def u8s8_saturates() -> bool:
    """Whether this CPU's U8S8 int8 kernels lose precision (x86 without AVX-512 VNNI).

    ONNX Runtime multiplies uint8 activations by int8 weights with ``vpmaddubsw`` on x86 CPUs
    without VNNI, and that instruction adds pairs of products in saturating 16-bit arithmetic:
    measured on an AVX2-only CPU, 1.7 % of Fashion-MNIST test images changed their top-1 label.
    Its U8U8 kernels are exact there, but 1.9x slower than U8S8 on a VNNI CPU, where U8S8 is
    exact too (as on AMX and ARM64), so they are asked for only where they are needed. CPUID
    is read through numpy's dispatcher, which knows the CPU the process really runs on.
    """
    if platform.machine().lower() not in ("x86_64", "amd64", "i386", "i686"):
        return False
    from numpy._core._multiarray_umath import __cpu_features__

    return not __cpu_features__.get("AVX512VNNI", False)


def needs_exact_int8(meta: dict[str, str]) -> bool:
    """Whether this file needs ONNX Runtime's exact U8U8 path on this CPU.

    Only where U8S8 saturates, and not for a file whose U8S8 pairs of products fit 16 bits:
    every dense layer takes 7-bit activations (``DENSE_INPUT_BITS_KEY``), or each takes 7-bit
    activations or weights whose neighbouring pairs cannot saturate (``U8S8_PAIRS_KEY``). Then
    the fast U8S8 kernels give a VNNI CPU's answers within the calibrated ranges (Fashion-MNIST:
    the same labels on all 10,000 test images, probabilities equal on 9,970 and within 0.002 on
    the others, whose values exceed the 7-bit ranges; ImageNet: the same
    labels, probabilities equal on 131 of 132 images, 0.026 apart on one whose values exceed
    the 7-bit ranges), and the 14-29 % the U8U8 path costs on AVX2 is not paid.
    """
    fits = meta.get(DENSE_INPUT_BITS_KEY) == "7" or meta.get(U8S8_PAIRS_KEY) == U8S8_PAIRS_VALUE
    return u8s8_saturates() and not fits


def session_options(
    threads: int | None = None,
    *,
    reference: bool = False,
    exact_int8: bool | None = None,
    spin: bool = True,
) -> Any:
    """ONNX Runtime options for a small-CPU server: bounded threads, full graph optimization.

    ``reference=True`` turns graph optimization off: every QuantizeLinear / DequantizeLinear
    then runs as written and the layers compute in float, which is what the int8 file means
    independently of the CPU's integer kernels. Serving never uses it; the model checks
    compare the two (``tests/functions/inference/test_shipped_models.py``,
    ``model_build cpu-check``). ``exact_int8``: the exact U8U8 kernels on or off; None (what
    serving uses) turns them on exactly where U8S8 saturates. ``False`` exists to measure
    what the exact path costs (``model_build int8-latency``). ``spin=False``: idle threads
    sleep at once instead of spin-waiting for the next run (:meth:`Model.for_frames`).
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or allocated_cpus()
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = (
        ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        if reference
        else ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    )
    if u8s8_saturates() if exact_int8 is None else exact_int8:
        # ONNX Runtime's own remedy: its int8 weights are widened and run by the U8U8 kernels.
        opts.add_session_config_entry("session.x64quantprecision", "1")
    if not spin:
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3
    return opts


_SHARED_ARENA = threading.Lock()
_shared_arena_ready = False


def _session(data: bytes, options: Any) -> Any:
    """A CPU session drawing its working memory from the process's one shared arena.

    Why shared: each session would otherwise keep its own arena, as large as its biggest
    batch needed (~170 MiB for 16 ImageNet frames); a model's second session
    (:meth:`Model.for_frames`) would double that. Sharing costs it ~6 MiB.
    """
    import onnxruntime as ort

    global _shared_arena_ready
    with _SHARED_ARENA:
        if not _shared_arena_ready:
            cpu = ort.OrtMemoryInfo(
                "Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT
            )
            ort.create_and_register_allocator(cpu, ort.OrtArenaCfg(0, -1, -1, -1))
            _shared_arena_ready = True
    options.add_session_config_entry("session.use_env_allocators", "1")
    return ort.InferenceSession(data, sess_options=options, providers=["CPUExecutionProvider"])


@dataclass
class Model:
    """A loaded classifier: one ONNX Runtime session plus the metadata that describes it."""

    key: str
    path: Path
    name: str
    version: str
    task: str
    labels: list[str]
    resize_policy: str
    input_size: tuple[int, int]
    input_name: str
    output_name: str
    session: Any = field(repr=False)
    #: Content hash of the file (:mod:`inference.identity`): changes whenever the weights do.
    sha: str = ""
    #: Dimensions of the ``embedding`` output; 0 when the model has none.
    embedding_dims: int = 0
    #: Cosine similarity from which two vectors are the same picture (None: not measured).
    duplicate_threshold: float | None = None
    #: How the session was made (threads None: the CPUs allocated to the process), so
    #: :meth:`for_frames` makes its second one alike.
    threads: int | None = field(default=None, repr=False)
    reference: bool = field(default=False, repr=False)
    #: Whether the session runs ONNX Runtime's exact U8U8 kernels (:func:`needs_exact_int8`).
    exact_int8: bool = field(default=False, repr=False)
    _for_frames: Model | None = field(default=None, repr=False, compare=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], *, threads: int | None = None, reference: bool = False
    ) -> Model:
        """Create the session and validate the contract; raises :class:`ModelContractError`.

        ``reference``: the unoptimized execution (see :func:`session_options`), for checks.
        """
        path = Path(path)
        data = path.read_bytes()
        try:
            exact = needs_exact_int8(identity.metadata(data))
        except identity.NotAModelFile as exc:
            raise ModelContractError(f"{path.name}: not an ONNX file: {exc}") from exc
        session = _session(data, session_options(threads, reference=reference, exact_int8=exact))
        meta = session.get_modelmeta().custom_metadata_map
        missing = [k for k in REQUIRED_METADATA if k not in meta]
        if missing:
            raise ModelContractError(f"{path.name}: metadata_props lack {missing}")
        sha = verified_sha(path, data, meta)
        labels = json.loads(meta["labels"])
        if meta["resize"] not in RESIZE_POLICIES:
            raise ModelContractError(f"{path.name}: unknown resize policy {meta['resize']!r}")
        (inp,) = session.get_inputs()
        out = session.get_outputs()[0]
        if inp.type != "tensor(uint8)" or len(inp.shape) != 4 or inp.shape[3] != 3:
            raise ModelContractError(f"{path.name}: input must be uint8 NHWC, is {inp.type}")
        height, width = inp.shape[1], inp.shape[2]
        if not (isinstance(height, int) and isinstance(width, int)):
            raise ModelContractError(f"{path.name}: input height/width must be fixed")
        classes = out.shape[-1]
        if isinstance(classes, int) and classes != len(labels):
            raise ModelContractError(f"{path.name}: {classes} outputs but {len(labels)} labels")
        dims = _embedding_dims(path, session)
        threshold = meta.get("duplicate_threshold")
        return cls(
            key=model_key(path),
            path=path,
            name=meta["name"],
            version=meta["version"],
            task=meta["task"],
            labels=labels,
            resize_policy=meta["resize"],
            input_size=(height, width),
            input_name=inp.name,
            output_name=out.name,
            session=session,
            sha=sha,
            embedding_dims=dims,
            duplicate_threshold=float(threshold) if dims and threshold else None,
            threads=threads,
            reference=reference,
            exact_int8=exact,
        )

    def for_frames(self) -> Model:
        """This model on a second session whose idle threads sleep instead of spin-waiting.

        Why: after each run ONNX Runtime's threads spin for a while, waiting for the next.
        Between two batches of a video's frames the next batch is being decoded (ffmpeg, or
        Pillow for an animation) on the same CPUs, and the spinning takes the CPU from it:
        on 2 vCPUs a 60 s 720p clip was classified 10 % faster at 1 frame/s and 17 % faster
        at 5 frames/s without it. Single pictures keep the spinning session, which answers
        a lone image ~1.5 ms sooner. Made on first use, once per instance.
        """
        with self._lock:
            if self._for_frames is None:
                data = self.path.read_bytes()
                options = session_options(
                    self.threads, reference=self.reference, exact_int8=self.exact_int8, spin=False
                )
                session = _session(data, options)
                sha = verified_sha(self.path, data, session.get_modelmeta().custom_metadata_map)
                if sha != self.sha:
                    raise ModelContractError(f"{self.path.name} changed on disk since it loaded")
                quiet = replace(self, session=session, _lock=threading.Lock())
                quiet._for_frames = quiet
                self._for_frames = quiet
            return self._for_frames

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Probabilities ``[N, C]`` for a uint8 ``[N, H, W, 3]`` batch."""
        return self.session.run([self.output_name], {self.input_name: batch})[0]

    def predict_with_embedding(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Probabilities ``[N, C]`` and, if the model has them, vectors ``[N, D]`` (one run)."""
        if not self.embedding_dims:
            return self.predict(batch), None
        probs, vectors = self.session.run(
            [self.output_name, EMBEDDING_OUTPUT], {self.input_name: batch}
        )
        return probs, vectors

    def describe(self) -> dict[str, Any]:
        """The public description used by ``GET /v1/models`` and the CLI."""
        return {
            "id": self.key,
            "name": self.name,
            "version": self.version,
            "sha": self.sha,
            "task": self.task,
            "inputSize": {"height": self.input_size[0], "width": self.input_size[1]},
            "resize": self.resize_policy,
            "labels": self.labels,
            "embeddingDims": self.embedding_dims or None,
        }


def _embedding_dims(path: Path, session: Any) -> int:
    """Dimensions of the optional ``embedding`` output (0 without one); checks its shape."""
    outputs = {o.name: o for o in session.get_outputs()}
    out = outputs.get(EMBEDDING_OUTPUT)
    if out is None:
        return 0
    dims = out.shape[-1] if len(out.shape) == 2 else None
    if out.type != "tensor(float)" or not isinstance(dims, int):
        raise ModelContractError(
            f"{path.name}: output {EMBEDDING_OUTPUT!r} must be float [N, D], is {out.type}"
            f" {out.shape}"
        )
    if not 1 <= dims <= MAX_EMBEDDING_DIMS:
        raise ModelContractError(
            f"{path.name}: {dims}-dimensional embedding; Firestore vector search takes"
            f" 1 to {MAX_EMBEDDING_DIMS}"
        )
    return dims


def model_key(path: Path) -> str:
    """A model's id: its file name up to the first dot (``fashion.int8.onnx`` -> ``fashion``)."""
    return path.name.split(".", 1)[0]


def best_labels(probs: np.ndarray, labels: list[str], k: int) -> list[dict[str, Any]]:
    """The ``k`` most probable labels, highest first, as ``[{label, score}]``."""
    import numpy as np

    k = max(1, min(k, len(labels)))
    idx = np.argpartition(-probs, k - 1)[:k]
    idx = idx[np.argsort(-probs[idx], kind="stable")]
    return [{"label": labels[i], "score": round(float(probs[i]), 6)} for i in idx]


class ModelRegistry:
    """The models of a folder, each loaded on first use and then kept for the instance.

    Why lazy: deploy discovery imports ``main.py`` under a 10 s limit and most
    instances serve one model; loading happens once per instance, under a lock so
    concurrent requests do not build the same session twice.
    """

    def __init__(self, directory: str | os.PathLike[str] = MODELS_DIR) -> None:
        self.directory = Path(directory)
        self._loaded: dict[str, Model] = {}
        self._lock = threading.Lock()

    def files(self) -> dict[str, Path]:
        """Model id -> file, for every ``*.onnx`` in the folder.

        Two files with one id (``x.int8.onnx`` beside ``x.fp32.onnx``) are refused: which
        one served would depend on the order of a directory listing.
        """
        found: dict[str, list[Path]] = {}
        for path in sorted(self.directory.glob("*.onnx")):
            found.setdefault(model_key(path), []).append(path)
        clashes = {key: paths for key, paths in found.items() if len(paths) > 1}
        if clashes:
            named = "; ".join(
                f"{key}: {', '.join(p.name for p in paths)}" for key, paths in clashes.items()
            )
            raise ModelContractError(
                f"{self.directory}: two model files with one id ({named}); a model's id is its"
                " file name up to the first dot: keep one file per id"
            )
        return {key: paths[0] for key, paths in found.items()}

    def keys(self) -> list[str]:
        """Ids of the models that can be served."""
        return sorted(self.files())

    def get(self, key: str) -> Model:
        """The model with this id, loading it on first use; ``KeyError`` if there is none."""
        model = self._loaded.get(key)
        if model is not None:
            return model
        with self._lock:
            if key not in self._loaded:
                files = self.files()
                if key not in files:
                    raise KeyError(key)
                started = time.perf_counter()
                model = Model.load(files[key])
                millis = (time.perf_counter() - started) * 1000
                logs.model_loaded(key, model.name, model.version, model.sha, millis)
                self._loaded[key] = model
            return self._loaded[key]

    def all(self) -> list[Model]:
        """Every model, loaded (used to list them)."""
        return [self.get(key) for key in self.keys()]


_default_registry: ModelRegistry | None = None


def default_registry() -> ModelRegistry:
    """The per-instance registry of ``functions/models`` (or ``MC_MODELS_DIR``)."""
    global _default_registry
    if _default_registry is None:
        _default_registry = ModelRegistry(os.environ.get("MC_MODELS_DIR") or MODELS_DIR)
    return _default_registry
