"""`anpr-edge train-ocr`: train the attention OCR on real crops plus synthetic plates, export ONNX.

- Data: the train split of each real crop set (split by plate text, see ``datasets.split_of``), and a
  pool of synthetic plates rendered by ``synth_plates`` and cut with the runtime's ``crop_plate`` from
  jittered boxes (cached on disk, so a resumed run trains on the same pool). Every batch mixes both.
- Model selection: exact-match on the fixed real validation splits, never on the test set
  (fr-plate-scenes), which is only scored at the end.
- Time budget: the learning-rate schedule (warm-up then cosine) runs on elapsed training time (or on steps,
  when ``max_steps`` ends the run first), so a run of N minutes ends annealed; checkpoints every few minutes
  make it resumable (``--resume``).
- Export: the best weights go to ONNX (opset 17, dynamic batch, fixed crop size, charset in the
  metadata), and the export is checked against PyTorch on the same input.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import multiprocessing
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import yaml
from pydantic import Field, ValidationError
from torch.nn import functional as F
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm import tqdm

from anpr_edge import paths
from anpr_edge.config import Section, _describe
from anpr_edge.crop import crop_plate, fit_crop
from anpr_edge.errors import ConfigError
from anpr_edge.ocr import DEFAULT_CHARSET, decode_greedy
from anpr_edge.train import datasets, splice
from anpr_edge.train.augment import augment_crop
from anpr_edge.train.ocr_model import OcrModelConfig, PlateOcrNet, count_parameters

log = logging.getLogger(__name__)

SYNTH_POOL_VERSION = 10  # 2: long tail of in-plane roll (up to 25 degrees); 3: sign and plate typefaces;
# 4: French short-tail Q, more (and narrower) old French FNI plates; 5: medium French faces (reverted);
# 6: Chinese plates (their province character drawn as an emblem, not labelled); 7: steep side views
# (yaw 30-60 degrees on 10% of plates); 8: the French plate typeface's straight-sided M and W; 9: Chinese plates
# lettered thin and well spaced, mostly digits after the dot, regular-weight narrow faces in the generic layouts;
# a tenth of the plates cut as pre-cut plate images (PRECUT_SHARE); 10: Tunisian plates, their Arabic words
# labelled T and N. ``data.reshape_share`` (off by default) adds its share to the pool's cache key.

# Share of synthetic plates cut as a plate image handed over by another pipeline or a crop set (``precut_crop``:
# the plate's own box, no margin, its aspect stretched or squeezed), not as the detector's padded box. The
# 495-minute OCR, which saw none, read cn-plate-crops (94x24 crops, characters to the edges) at 14%, and the
# same crops with a margin around them at 45% (`eval-ocr --shared --image-margin 0.15`).
PRECUT_SHARE = 0.1


# ------------------------------------------------------------------------------------------------ config
class OcrModelSettings(Section):
    charset: str = Field(DEFAULT_CHARSET, min_length=2, description="Characters the model reads, in symbol order.")
    height: int = Field(64, ge=16, le=256, multiple_of=8, description="Crop height in pixels.")
    width: int = Field(192, ge=32, le=1024, multiple_of=8, description="Crop width in pixels.")
    max_len: int = Field(12, ge=4, le=32, description="Most characters a plate can have.")
    channels: tuple[int, ...] = Field((16, 32, 64, 96), min_length=3, description="Encoder stage widths.")
    dim: int = Field(96, ge=16, le=512, description="Attention width (divisible by heads).")
    heads: int = Field(4, ge=1, le=16, description="Attention heads.")
    decoder_layers: int = Field(2, ge=1, le=6, description="Attention decoder layers.")
    context_layers: int = Field(
        1, ge=0, le=1,
        description="Transformer layers over the map cells before the decoder (0 or 1). 0 saves about a third of "
        "the batched inference time; the decoder's cross-attention still sees the whole map.",
    )
    dropout: float = Field(0.1, ge=0.0, le=0.5, description="Dropout in the attention layers.")
    decoder: Literal["autoregressive", "parallel"] = Field(
        "autoregressive",
        description="autoregressive: one character per step, each told the ones before (unrolled in the graph); "
        "parallel: every position read at once by learned position queries (faster, simpler graph).",
    )

    def network(self) -> OcrModelConfig:
        return OcrModelConfig(**self.model_dump())


class OcrDataSettings(Section):
    real_sets: list[str] = Field(
        ["us-nyc-plate-crops", "br-plate-crops", "tn-plate-crops"], description="Shared crop sets to train on."
    )
    test_sets: list[str] = Field(["fr-plate-scenes"], description="Sets only scored at the end, never trained on.")
    synthetic_samples: int = Field(80_000, ge=0, description="Size of the synthetic plate pool.")
    synthetic_fraction: float = Field(0.5, ge=0.0, le=1.0, description="Share of synthetic crops in each batch.")
    padding: float = Field(0.15, ge=0.0, le=0.5, description="Crop padding around boxes, as at run time.")
    splice_fraction: float = Field(
        0.0, ge=0.0, le=1.0,
        description="Share of the real crops in each batch that are spliced (``train.splice``): the left part of "
        "one real crop of a set joined in a character gap to the right part of another, so real glyphs come in "
        "texts the model has not memorised. 0: off (a 75-minute continuation of the shipped model with 0.3 and "
        "token_noise 0.1 did not beat it on the validation splits, 2026-12-06).",
    )
    reshape_share: float = Field(
        0.0, ge=0.0, le=1.0,
        description="Share of synthetic plates whose letters are reshaped (``synth_plates.reshape_letters``: a "
        "smooth random warp and another stroke weight), for the plate dies no font draws. 0: off (the "
        "leave-one-region-out runs of 2026-12-07 read the unseen US plates 25.4% with 0.5 against 21.9% "
        "without, French 32.9% against 36.5%: one run each, not significant; docs/BENCHMARKS.md).",
    )


class OcrTrainConfig(Section):
    model: OcrModelSettings = OcrModelSettings()
    data: OcrDataSettings = OcrDataSettings()
    batch_size: int = Field(64, ge=2, le=1024)
    lr: float = Field(2e-3, gt=0, le=1.0, description="Peak learning rate (AdamW).")
    encoder_lr_scale: float = Field(
        1.0, gt=0, le=1.0,
        description="Learning-rate factor for the encoder, its context layer and the CTC head: below 1 when a "
        "new decoder learns on a trained encoder (--init-weights from a model of the other decoder kind).",
    )
    weight_decay: float = Field(0.05, ge=0.0)
    label_smoothing: float = Field(0.1, ge=0.0, lt=1.0)
    ctc_weight: float = Field(0.3, ge=0.0, description="Weight of the encoder's auxiliary CTC loss.")
    token_noise: float = Field(
        0.0, ge=0.0, lt=1.0,
        description="Share of the characters the autoregressive decoder is told (teacher forcing) that are "
        "replaced by random ones, so it reads each character from the image rather than guessing it from the "
        "characters before (plate texts are not language). For continuing a trained model: from scratch, 0.1 "
        "kept a 25-minute run from learning at all (2026-12-06).",
    )
    ema_decay: float = Field(
        0.0, ge=0.0, lt=1.0,
        description="Decay of an exponential moving average of the weights (buffers included), e.g. 0.999: "
        "validation scores, selects and exports the average instead of the raw weights, which are noisier step "
        "to step. 0: off.",
    )
    teacher: Path | None = Field(
        None,
        description="Distillation: an OCR exported by train-ocr (e.g. engines/ocr.onnx) whose per-position "
        "distributions on each training batch (same images and augmentation, teacher forcing on the same "
        "characters) the model also learns, beside the labels. Its charset and max_len must match; its crop is "
        "resized from the batch's. None: off.",
    )
    distill_weight: float = Field(
        1.0, ge=0.0, description="Weight of the distillation loss (KL divergence to the teacher, times T^2)."
    )
    distill_temperature: float = Field(
        2.0, gt=0.0, le=10.0, description="Softmax temperature of teacher and model in the distillation loss."
    )
    minutes: float = Field(60.0, gt=0, description="Training time budget (the schedule anneals to it).")
    eval_every: int = Field(250, ge=1, description="Validate every N steps.")
    seed: int = 0
    threads: int = Field(2, ge=1, le=256, description="PyTorch CPU threads.")
    checkpoint_dir: Path | None = Field(None, description="Default: <cache>/ocr-train.")
    output: Path = Field(Path("engines/ocr.onnx"), description="Exported ONNX model.")


def load_train_config(path: str | os.PathLike[str] | None) -> OcrTrainConfig:
    if path is None:
        return OcrTrainConfig()
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: training config not found") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: invalid YAML: {error}") from None
    try:
        return OcrTrainConfig.model_validate(data)
    except ValidationError as error:
        problems = "; ".join(_describe(item) for item in error.errors(include_url=False))
        raise ConfigError(f"{path}: {problems}") from None


# -------------------------------------------------------------------------------------------------- data
def eval_crop(image: np.ndarray, box: Sequence[float] | None, size: tuple[int, int], padding: float) -> np.ndarray:
    """How the runtime sees a labelled image: a crop image is fitted whole, a scene is cut at its box."""
    return fit_crop(image, size) if box is None else crop_plate(image, box, size, padding).image


@dataclass
class EvalSet:
    name: str
    crops: np.ndarray  # (N, H, W, 3) uint8
    texts: list[str]
    files: list[str] = field(default_factory=list)


def _usable(text: str, charset: str, max_len: int) -> bool:
    return 0 < len(text) <= max_len and all(ch in charset for ch in text)


RealCrop = tuple[np.ndarray, str, str]  # image (a crop, or a scene's padded box region), text, set name


def load_real_sets(config: OcrTrainConfig) -> tuple[list[RealCrop], list[EvalSet], list[EvalSet]]:
    """(train crops with text and set, validation sets, test sets); images decoded once and kept in memory."""
    model = config.model
    size = (model.width, model.height)
    train: list[RealCrop] = []
    val_sets, test_sets = [], []
    for name in config.data.real_sets:
        if name not in datasets.SHARED_SETS:
            raise ConfigError(f"data.real_sets: unknown set '{name}' (known: {', '.join(datasets.SHARED_SETS)})")
        if datasets.SHARED_SETS[name].role == "test":
            raise ConfigError(f"data.real_sets: '{name}' is a held-out test set and is never trained on")
    for name in config.data.real_sets + config.data.test_sets:
        labels = datasets.load_shared(name, charset=model.charset)
        is_test = name in config.data.test_sets or datasets.SHARED_SETS[name].role == "test"
        val_crops, val_texts, val_files = [], [], []
        before = len(train)
        for item in labels.items:
            if not _usable(item.text, model.charset, model.max_len):
                continue
            split = "val" if is_test else datasets.split_of(item.text)
            image = datasets.read_image(item.path)
            if split == "train":
                # Scenes are kept as their padded box region so augmentation can jitter the box later.
                crop = image if item.box is None else crop_plate(image, item.box, size, config.data.padding).image
                train.append((crop, item.text, name))
            else:
                val_crops.append(eval_crop(image, item.box, size, config.data.padding))
                val_texts.append(item.text)
                val_files.append(str(item.path))
        evaluation = EvalSet(name, np.stack(val_crops) if val_crops else np.zeros((0, model.height, model.width, 3), np.uint8), val_texts, val_files)
        (test_sets if is_test else val_sets).append(evaluation)
        log.info("%s: %d train, %d %s, %d skipped", name, len(train) - before, len(val_texts),
                 "test" if is_test else "val", len(labels.skipped))
    return train, val_sets, test_sets


def _synth_worker(
    args: tuple[int, int, int, tuple[int, int], float, str, int, float],
) -> tuple[np.ndarray, list[str]]:
    from anpr_edge.train import synth_plates

    seed, chunk, count, size, padding, charset, max_len, reshape_share = args
    rng = np.random.default_rng([seed, chunk])
    crops, texts = [], []
    while len(texts) < count:
        sample = synth_plates.synth_sample(rng, reshape_share=reshape_share)
        if not _usable(sample.text, charset, max_len):
            continue
        if rng.random() < PRECUT_SHARE:
            crops.append(datasets.precut_crop(sample.image, sample.box, size, rng))
        else:
            box = datasets.jitter_box(sample.box, rng)
            crops.append(crop_plate(sample.image, box, size, padding * rng.uniform(0.3, 1.7)).image)
        texts.append(sample.text)
    return np.stack(crops), texts


def synthetic_pool(config: OcrTrainConfig, workers: int = 2) -> tuple[np.ndarray, list[str]]:
    """The synthetic crops for this config, generated once (in parallel) and cached on disk."""
    model = config.model
    count = config.data.synthetic_samples
    size = (model.width, model.height)
    if count == 0:
        return np.zeros((0, model.height, model.width, 3), np.uint8), []
    key = f"ocr-synth-v{SYNTH_POOL_VERSION}-s{config.seed}-n{count}-{size[0]}x{size[1]}-p{config.data.padding:g}"
    if config.data.reshape_share > 0:
        key += f"-r{config.data.reshape_share:g}"
    cache = paths.cache_dir() / key
    if (cache / "texts.json").is_file():
        return np.load(cache / "crops.npy", mmap_mode="r"), json.loads((cache / "texts.json").read_text())
    chunk = 500
    jobs = [
        (config.seed, i, min(chunk, count - i * chunk), size, config.data.padding, model.charset, model.max_len,
         config.data.reshape_share)
        for i in range(math.ceil(count / chunk))
    ]
    crops, texts = [], []
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        for part_crops, part_texts in tqdm(pool.imap(_synth_worker, jobs), total=len(jobs), desc="synthetic plates", unit="chunk"):
            crops.append(part_crops)
            texts += part_texts
    images = np.concatenate(crops)
    cache.mkdir(parents=True, exist_ok=True)
    np.save(cache / "crops.npy", images)
    (cache / "texts.json").write_text(json.dumps(texts))  # written last: marks the cache complete
    return images, texts


def encode_texts(texts: Sequence[str], charset: str, max_len: int) -> torch.Tensor:
    """Targets (B, max_len): symbol i + 1 for charset[i], then 0 (end) for every remaining slot."""
    index = {ch: i + 1 for i, ch in enumerate(charset)}
    targets = torch.zeros(len(texts), max_len, dtype=torch.long)
    for row, text in enumerate(texts):
        targets[row, : len(text)] = torch.tensor([index[ch] for ch in text])
    return targets


def ctc_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """CTC loss of per-column logits (B, T, symbols) against end-padded targets (B, max_len); blank = 0."""
    lengths = (targets > 0).sum(dim=1)
    log_probs = logits.log_softmax(dim=-1).transpose(0, 1)  # (T, B, symbols)
    steps = torch.full((logits.shape[0],), logits.shape[1], dtype=torch.long)
    return F.ctc_loss(log_probs, targets[targets > 0], steps, lengths, blank=0, zero_infinity=True)


def to_batch(crops: Sequence[np.ndarray]) -> torch.Tensor:
    """BGR uint8 crops -> RGB float tensor in 0..1, as the runtime feeds the ONNX model."""
    array = np.stack(crops)[..., ::-1].transpose(0, 3, 1, 2).astype(np.float32) / 255.0
    return torch.from_numpy(np.ascontiguousarray(array))


class BatchSampler:
    """Mixed batches: augmented real crops (randomly re-cut around their box), some of them spliced
    (``splice_fraction``), and synthetic crops."""

    def __init__(self, config: OcrTrainConfig, real: list[RealCrop], synth: tuple[np.ndarray, list[str]], rng: np.random.Generator) -> None:
        self.config, self.real, self.rng = config, real, rng
        self.synth_images, self.synth_texts = synth
        self.size = (config.model.width, config.model.height)
        self.splices = splice_pool(real, self.size, config.model.max_len) if config.data.splice_fraction > 0 else None

    def _real(self) -> tuple[np.ndarray, str]:
        spliced = None
        if self.splices is not None and self.rng.random() < self.config.data.splice_fraction:
            spliced = self.splices.sample(self.rng)
        image, text = spliced if spliced is not None else self.real[int(self.rng.integers(len(self.real)))][:2]
        height, width = image.shape[:2]
        # Hand-cut crops can be tight: never cut into them (a lost edge character would make the label wrong).
        box = datasets.jitter_box((0.0, 0.0, float(width), float(height)), self.rng, shift=0.02, scale=0.04)
        crop = crop_plate(image, box, self.size, float(self.rng.uniform(0.02, 0.12))).image
        return augment_crop(crop, self.rng), text

    def _synthetic(self) -> tuple[np.ndarray, str]:
        i = int(self.rng.integers(len(self.synth_texts)))
        return augment_crop(np.asarray(self.synth_images[i]), self.rng, strength=0.5), self.synth_texts[i]

    def next(self) -> tuple[torch.Tensor, list[str]]:
        batch = self.config.batch_size
        n_synth = int(round(batch * self.config.data.synthetic_fraction)) if self.synth_texts else 0
        if not self.real:
            n_synth = batch
        samples = [self._synthetic() for _ in range(n_synth)] + [self._real() for _ in range(batch - n_synth)]
        return to_batch([crop for crop, _ in samples]), [text for _, text in samples]


def splice_pool(real: Sequence[RealCrop], size: tuple[int, int], max_len: int) -> splice.SplicePool:
    """The real crops whose characters segment cleanly, ready to splice (scenes' box regions are fitted
    like crops: splicing works on what the model reads)."""
    started = time.monotonic()
    pool = splice.pool_of(real, size, max_len)
    log.info("splicing: %d of %d real crops segment into their characters (%.1f s)", len(pool), len(real),
             time.monotonic() - started)
    return pool


# ----------------------------------------------------------------------------------------- train / eval
_ENCODER_PARTS = ("encoder.", "position", "context.", "ctc.")


def load_teacher(path: Path, student: OcrModelConfig) -> PlateOcrNet:
    """The frozen teacher network of a distillation run, its weights read back from the exported ONNX."""
    from anpr_edge.train.onnx_weights import load_onnx_weights, onnx_model_config

    if not path.is_file():
        raise ConfigError(f"teacher: {path}: no such file")
    teacher_config = onnx_model_config(path)
    if teacher_config.charset != student.charset or teacher_config.max_len != student.max_len:
        raise ConfigError(f"teacher: {path} reads charset {teacher_config.charset!r} up to {teacher_config.max_len} "
                          f"characters; this config {student.charset!r} up to {student.max_len}: they must match")
    teacher = PlateOcrNet(teacher_config)
    load_onnx_weights(teacher, path, export_onnx)
    teacher.eval()
    for parameter in teacher.parameters():
        parameter.requires_grad_(False)
    return teacher


def distillation_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """KL(teacher || student) of the per-position distributions at ``temperature``, times its square (so the
    gradient's scale does not depend on it), averaged over the positions of the batch."""
    symbols = student_logits.shape[-1]
    student = F.log_softmax(student_logits.reshape(-1, symbols) / temperature, dim=-1)
    teacher = F.log_softmax(teacher_logits.reshape(-1, symbols) / temperature, dim=-1)
    return F.kl_div(student, teacher, log_target=True, reduction="batchmean") * temperature**2


def teacher_logits(teacher: PlateOcrNet, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """The teacher's teacher-forced logits on the batch, its crop resized from the batch's if it differs."""
    height, width = teacher.config.height, teacher.config.width
    if images.shape[-2:] != (height, width):
        images = F.interpolate(images, size=(height, width), mode="bilinear", align_corners=False)
    with torch.no_grad():
        return teacher.train_logits(images, targets)[0]


def parameter_groups(model: PlateOcrNet, encoder_lr_scale: float) -> list[dict[str, Any]]:
    """AdamW parameter groups: one, or (scale below 1) the encoder side at ``encoder_lr_scale`` of the rate
    and the decoder side at the full rate."""
    if encoder_lr_scale == 1.0:
        return [{"params": list(model.parameters())}]
    encoder, decoder = [], []
    for name, param in model.named_parameters():
        (encoder if name.startswith(_ENCODER_PARTS) else decoder).append(param)
    return [{"params": encoder, "lr_scale": encoder_lr_scale}, {"params": decoder, "lr_scale": 1.0}]


def learning_rate(peak: float, progress: float, warmup: float = 0.03) -> float:
    if progress < warmup:
        return peak * max(progress / warmup, 0.01)
    return peak * 0.5 * (1.0 + math.cos(math.pi * min(1.0, (progress - warmup) / (1.0 - warmup))))


@torch.no_grad()
def predict(model: PlateOcrNet, crops: np.ndarray, batch: int = 256) -> list[tuple[str, float]]:
    model.eval()
    out: list[tuple[str, float]] = []
    for start in range(0, len(crops), batch):
        probs, _ = model(to_batch(list(crops[start : start + batch])))
        out += [(text, conf) for text, conf, _ in decode_greedy(probs.numpy(), model.config.charset)]
    return out


def exact_match(model: PlateOcrNet, evaluation: EvalSet) -> float:
    if not evaluation.texts:
        return float("nan")
    reads = predict(model, evaluation.crops)
    return float(np.mean([text == truth for (text, _), truth in zip(reads, evaluation.texts)]))


def _save(path: Path, payload: dict[str, object]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)


@dataclass
class TrainResult:
    steps: int
    seconds: float
    best_score: float
    best_step: int
    val: dict[str, float]
    onnx: Path | None
    history: list[dict[str, float]]
    samples: dict[str, int]
    # Where the weights started when the run continued an earlier model (``--init-weights``), with that
    # model's own training steps and minutes (from its ONNX metadata or checkpoint).
    init_from: str | None = None
    prior_steps: int = 0
    prior_minutes: float = 0.0
    final_weights: bool = False  # exported the run's last step rather than its best validated one


def train_ocr(
    config: OcrTrainConfig,
    *,
    resume: bool = False,
    max_steps: int | None = None,
    export: bool = True,
    progress: bool = True,
    init_weights: Path | None = None,
) -> TrainResult:
    torch.manual_seed(config.seed)
    torch.set_num_threads(config.threads)
    rng = np.random.default_rng(config.seed)
    checkpoints = config.checkpoint_dir or paths.cache_dir() / "ocr-train"
    net_config = config.model.network()
    # Loaded first: a wrong teacher path fails before minutes of data loading and synthetic rendering.
    teacher = load_teacher(config.teacher, net_config) if config.teacher is not None else None
    if teacher is not None:
        log.info("distilling from %s (weight %g, temperature %g)", config.teacher, config.distill_weight,
                 config.distill_temperature)

    real, val_sets, test_sets = load_real_sets(config)
    synth = synthetic_pool(config)
    if not real and not synth[1]:
        raise ConfigError("no training data: no real set loaded and synthetic_samples is 0")
    sampler = BatchSampler(config, real, synth, rng)
    log.info("training data: %d real crops, %d synthetic; validation: %s", len(real), len(synth[1]),
             ", ".join(f"{v.name} {len(v.texts)}" for v in val_sets))

    model = PlateOcrNet(net_config)
    optimizer = torch.optim.AdamW(parameter_groups(model, config.encoder_lr_scale), lr=config.lr,
                                  weight_decay=config.weight_decay)
    step, elapsed, best_score, best_step = 0, 0.0, -1.0, 0
    history: list[dict[str, float]] = []
    lineage: dict[str, object] = {}
    last = checkpoints / "last.pt"
    if resume and last.is_file():
        state = torch.load(last, weights_only=False)
        if _saved_config(state) != net_config:
            raise ConfigError(f"{last}: checkpoint was trained with another model config; start without --resume")
        model.load_state_dict(state["model"])
        if len(state["optimizer"]["param_groups"]) != len(optimizer.param_groups):
            raise ConfigError(f"{last}: checkpoint was trained with another encoder_lr_scale; resume with the same "
                              "training config or start without --resume")
        optimizer.load_state_dict(state["optimizer"])
        step, elapsed, best_score, best_step = state["step"], state["elapsed"], state["best_score"], state["best_step"]
        history = state["history"]
        rng.bit_generator.state = state["rng"]
        log.info("resumed at step %d after %.1f min (best %.4f at step %d)", step, elapsed / 60, best_score, best_step)
        lineage = state.get("lineage", lineage)
    elif init_weights is not None:
        lineage = _init_from(model, Path(init_weights), net_config, sampler)
    # The average starts as a copy of the (loaded) weights; torch's AveragedModel keeps it.
    ema = (AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(config.ema_decay), use_buffers=True)
           if config.ema_decay > 0 else None)
    if ema is not None and resume and last.is_file():
        if "ema" not in state:
            raise ConfigError(f"{last}: checkpoint was trained without ema_decay; resume with the same training config")
        ema.load_state_dict(state["ema"])
    scored = ema.module if ema is not None else model  # the weights validated, selected and exported
    log.info("model: %d parameters, crop %dx%d, max_len %d", count_parameters(model), net_config.width,
             net_config.height, net_config.max_len)

    budget = config.minutes * 60.0
    bar = tqdm(total=int(budget), initial=int(elapsed), unit="s", desc="train-ocr", disable=not progress, dynamic_ncols=True)
    last_saved = time.monotonic()
    window: list[float] = []  # losses since the last validation

    def validate() -> None:
        nonlocal best_score, best_step
        mean_loss = float(np.mean(window)) if window else float("nan")
        window.clear()
        scores = {v.name: exact_match(scored, v) for v in val_sets if v.texts}
        score = float(np.mean(list(scores.values()))) if scores else -mean_loss
        history.append({"step": step, "minutes": elapsed / 60, "loss": mean_loss, **scores})
        if score > best_score:
            best_score, best_step = score, step
            _save(checkpoints / "best.pt", {"model": scored.state_dict(), "model_config": net_config.to_dict(), "step": step})
        log.info("step %d (%.1f min): loss %.4f, val %s", step, elapsed / 60, mean_loss,
                 " ".join(f"{k} {v:.3f}" for k, v in scores.items()))
        model.train()

    def checkpoint() -> None:
        _save(last, {
            "model": model.state_dict(), "optimizer": optimizer.state_dict(), "model_config": net_config.to_dict(),
            "step": step, "elapsed": elapsed, "best_score": best_score, "best_step": best_step,
            "history": history, "rng": rng.bit_generator.state, "lineage": lineage,
            **({"ema": ema.state_dict()} if ema is not None else {}),
        })

    if lineage and step == 0:
        validate()  # the starting point is a candidate: a continuation never exports a worse model

    def progress(step: int, elapsed: float) -> float:
        # Whichever limit ends the run sets the schedule, so a step-limited run (tests, --max-steps) anneals
        # in the same steps on a fast machine as on a slow one.
        return max(elapsed / budget, step / max_steps if max_steps else 0.0)

    model.train()
    while elapsed < budget and (max_steps is None or step < max_steps):
        started = time.monotonic()
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(config.lr, progress(step, elapsed)) * group.get("lr_scale", 1.0)
        images, texts = sampler.next()
        targets = encode_texts(texts, net_config.charset, net_config.max_len)
        logits, ctc_logits = model.train_logits(images, targets, token_noise=config.token_noise)
        loss = F.cross_entropy(logits.reshape(-1, net_config.n_symbols), targets.reshape(-1),
                               label_smoothing=config.label_smoothing)
        loss = loss + config.ctc_weight * ctc_loss(ctc_logits, targets)
        if teacher is not None and config.distill_weight > 0:
            loss = loss + config.distill_weight * distillation_loss(
                logits, teacher_logits(teacher, images, targets), config.distill_temperature)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()
        if ema is not None:
            ema.update_parameters(model)
        step += 1
        window.append(loss.item())
        seconds = time.monotonic() - started
        elapsed += seconds
        bar.update(int(elapsed) - bar.n)
        bar.set_postfix(step=step, loss=f"{window[-1]:.3f}", best=f"{best_score:.3f}")
        if step % config.eval_every == 0:
            validate()
        if time.monotonic() - last_saved > 180:
            checkpoint()
            last_saved = time.monotonic()
    bar.close()
    if not history or history[-1]["step"] != step:
        validate()
    checkpoint()

    best = torch.load(checkpoints / "best.pt", weights_only=False)
    model.load_state_dict(best["model"])
    val_scores = {v.name: exact_match(model, v) for v in val_sets + test_sets if v.texts}
    onnx_path = None
    if export:
        onnx_path = export_onnx(model, config.output, metadata=_run_metadata(step, best_step, elapsed, lineage))
    return TrainResult(step, elapsed, best_score, best_step, val_scores, onnx_path, history,
                       {"real_train": len(real), "synthetic": len(synth[1]),
                        "spliceable": len(sampler.splices) if sampler.splices is not None else 0, **{f"val:{v.name}": len(v.texts) for v in val_sets + test_sets}},
                       **_lineage_fields(lineage))


def _run_metadata(step: int, best_step: int, elapsed: float, lineage: dict[str, object]) -> dict[str, str]:
    """ONNX metadata: this run's steps and minutes plus those of the models it continued, so the next
    continuation (and the card) can state the whole training time."""
    prior_steps, prior_minutes = int(lineage.get("prior_steps", 0)), float(lineage.get("prior_minutes", 0.0))  # type: ignore[arg-type]
    return {
        "train_steps": str(prior_steps + step), "best_step": str(prior_steps + best_step),
        "train_minutes": f"{prior_minutes + elapsed / 60:.1f}",
        **({"continued_from": str(lineage["from"])} if lineage else {}),
    }


def _lineage_fields(lineage: dict[str, object]) -> dict[str, object]:
    if not lineage:
        return {}
    return {"init_from": str(lineage["from"]), "prior_steps": int(lineage["prior_steps"]),  # type: ignore[call-overload]
            "prior_minutes": float(lineage["prior_minutes"])}  # type: ignore[arg-type]


def _saved_config(state: dict[str, Any]) -> OcrModelConfig | None:
    """The network config a checkpoint was trained with (older checkpoints lack newer fields: defaults)."""
    saved = state.get("model_config")
    return OcrModelConfig.from_dict(saved) if isinstance(saved, dict) else None


# Network keys a model may differ in and still start a run (--init-weights), by ``transfer_weights``.
TRANSFERABLE = ("decoder", "height", "width", "context_layers")


def transfer_weights(source: PlateOcrNet, target: PlateOcrNet) -> None:
    """Copy a trained network's weights into one that differs in decoder kind, crop size or context layers.

    The convolutions do not depend on the crop size; the learned position embedding of the map cells is
    resized (bilinear) to the new map; a context layer the target lacks is dropped (the decoder then reads the
    encoder's cells directly and relearns that); the autoregressive character embedding has no place in a
    parallel decoder (and a parallel one has none to give). Anything else that does not match is an error."""
    source_state, target_state = source.state_dict(), target.state_dict()
    rows, cols = source.config.feature_size
    new_rows, new_cols = target.config.feature_size
    loaded: dict[str, torch.Tensor] = {}
    for name, value in target_state.items():
        if name not in source_state:
            continue
        weight = source_state[name]
        if name == "position" and weight.shape != value.shape:
            grid = weight.reshape(1, rows, cols, -1).permute(0, 3, 1, 2)
            grid = torch.nn.functional.interpolate(grid, size=(new_rows, new_cols), mode="bilinear", align_corners=False)
            weight = grid.permute(0, 2, 3, 1).reshape(1, new_rows * new_cols, -1)
        loaded[name] = weight
    missing, unexpected = target.load_state_dict(loaded, strict=False)
    dropped = {name for name in source_state if name not in target_state}
    allowed = {"embed.weight"}
    problems = (set(missing) - allowed) | {name for name in dropped if name not in allowed and not name.startswith("context.")}
    if unexpected or problems:
        raise RuntimeError(f"weight transfer: unmatched weights {sorted(problems | set(unexpected))}")


def _describe_transfer(source: OcrModelConfig, target: OcrModelConfig) -> str:
    changes = [f"{key} {getattr(source, key)} -> {getattr(target, key)}"
               for key in TRANSFERABLE if getattr(source, key) != getattr(target, key)]
    return "weights carried over into a network with " + ", ".join(changes)


def _init_from(model: PlateOcrNet, path: Path, net_config: OcrModelConfig, sampler: BatchSampler) -> dict[str, object]:
    """Load the starting weights of a continued run from an exported ONNX (``engines/ocr.onnx``) or a
    checkpoint (``best.pt``/``last.pt``); returns the lineage recorded in the new model.

    An ONNX model whose network differs only in decoder kind, crop size or context layers also serves
    (``transfer_weights``): e.g. the shipped model as the start of a faster network on a smaller crop."""
    if not path.is_file():
        raise ConfigError(f"--init-weights {path}: no such file")
    if path.suffix == ".onnx":
        from anpr_edge.train.onnx_weights import (
            load_onnx_weights,
            onnx_metadata,
            onnx_model_config,
            recalibrate_batchnorms,
        )

        source_config = onnx_model_config(path)
        if dataclasses.replace(source_config, **{key: getattr(net_config, key) for key in TRANSFERABLE}) != net_config:
            raise ConfigError(f"--init-weights {path}: the model has another network config than this training config "
                              f"(only {', '.join(TRANSFERABLE)} may differ)")
        if net_config.context_layers > source_config.context_layers:
            raise ConfigError(f"--init-weights {path}: the model has no context layer to start this config's from "
                              "(use a training config with model.context_layers: 0, e.g. the recipe it was trained with)")
        source = model if source_config == net_config else PlateOcrNet(source_config)
        load_onnx_weights(source, path, export_onnx)
        if source is not model:
            transfer_weights(source, model)
            log.info("--init-weights %s: %s", path, _describe_transfer(source_config, net_config))
        images, _ = sampler.next()
        recalibrate_batchnorms(model, images)
        before, after = fit_ctc_head(model, sampler)
        log.info("--init-weights %s: CTC head (not in the ONNX) fitted on the loaded encoder: CTC loss %.2f -> %.2f",
                 path, before, after)
        meta = onnx_metadata(path)
        prior_steps, prior_minutes = int(meta.get("train_steps", 0)), float(meta.get("train_minutes", 0.0))
    else:
        state = torch.load(path, weights_only=False)
        if not isinstance(state, dict) or "model" not in state:
            raise ConfigError(f"--init-weights {path}: not an anpr-edge OCR checkpoint or ONNX model")
        if _saved_config(state) != net_config:
            raise ConfigError(f"--init-weights {path}: checkpoint was trained with another model config")
        model.load_state_dict(state["model"])
        prior_steps, prior_minutes = int(state.get("step", 0)), float(state.get("elapsed", 0.0)) / 60
    log.info("starting from %s (%d steps, %.1f min of earlier training)", path, prior_steps, prior_minutes)
    return {"from": path.name, "prior_steps": prior_steps, "prior_minutes": prior_minutes}


def fit_ctc_head(model: PlateOcrNet, sampler: BatchSampler, batches: int = 16, iterations: int = 400) -> tuple[float, float]:
    """Train the auxiliary CTC head alone on the frozen encoder's features of ``batches`` training batches;
    returns the mean CTC loss before and after.

    An exported ONNX model has no CTC head (it is training-only), so a run continued from one starts with a
    freshly drawn head. Every continuation of the shipped model used seed 0 and so redrew the same head, which its
    encoder has learnt to serve (CTC loss 0.4); any other seed draws a head whose loss (10-13) flows back into the
    trained encoder and unsettled it: validation fell from 0.895 to 0.855 in the first 250 steps of a seed-1
    run. Fitting the head first (seconds) removes that shock for any seed and any transferred network."""
    was_training = model.training
    model.eval()
    features, targets = [], []
    with torch.no_grad():
        for _ in range(batches):
            images, texts = sampler.next()
            features.append(model.encode(images))
            targets.append(encode_texts(texts, model.config.charset, model.config.max_len))

    def mean_loss() -> float:
        with torch.no_grad():
            return float(np.mean([ctc_loss(model.ctc_logits(f), t).item() for f, t in zip(features, targets)]))

    before = mean_loss()
    optimizer = torch.optim.Adam(model.ctc.parameters(), lr=1e-2)
    for i in range(iterations):
        loss = ctc_loss(model.ctc_logits(features[i % batches]), targets[i % batches])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    return before, mean_loss()


def export_checkpoint(config: OcrTrainConfig, *, which: Literal["best", "last"] = "best") -> TrainResult:
    """Export the best weights of the last run (without training), e.g. after the export code changed.

    ``which="last"`` exports its final weights instead: a continuation whose validation never beat its
    starting model exports that start, and its own end is still worth scoring on the other measures."""
    checkpoints = config.checkpoint_dir or paths.cache_dir() / "ocr-train"
    last, best_path = checkpoints / "last.pt", checkpoints / "best.pt"
    if not (last.is_file() and best_path.is_file()):
        raise ConfigError(f"no finished training run in {checkpoints}: train first")
    state = torch.load(last, weights_only=False)
    source = best_path if which == "best" else last
    chosen = torch.load(best_path, weights_only=False) if which == "best" else state
    if _saved_config(chosen) != config.model.network():
        raise ConfigError(f"{source}: checkpoint was trained with another model config than this one")
    model = PlateOcrNet(OcrModelConfig.from_dict(chosen["model_config"]))
    model.load_state_dict(chosen["model"])
    real, val_sets, test_sets = load_real_sets(config)
    synthetic = config.data.synthetic_samples
    size = (config.model.width, config.model.height)
    spliceable = len(splice_pool(real, size, config.model.max_len)) if config.data.splice_fraction > 0 else 0
    val_scores = {v.name: exact_match(model, v) for v in val_sets + test_sets if v.texts}
    lineage = state.get("lineage", {})
    exported_step = state["best_step"] if which == "best" else state["step"]
    onnx_path = export_onnx(model, config.output, metadata=_run_metadata(state["step"], exported_step, state["elapsed"], lineage))
    return TrainResult(state["step"], state["elapsed"], state["best_score"], state["best_step"], val_scores, onnx_path,
                       state["history"], {"real_train": len(real), "synthetic": synthetic, "spliceable": spliceable,
                                          **{f"val:{v.name}": len(v.texts) for v in val_sets + test_sets}},
                       **_lineage_fields(lineage), final_weights=which == "last")


# --------------------------------------------------------------------------------------------------- export
def export_onnx(model: PlateOcrNet, path: Path, metadata: dict[str, str] | None = None) -> Path:
    """Write the model as one static ONNX graph (dynamic batch) and check it against PyTorch."""
    import onnx
    import onnxruntime as ort

    config = model.config
    model.eval()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    example = torch.rand(2, 3, config.height, config.width)
    tmp = path.with_suffix(".tmp.onnx")
    torch.onnx.export(
        model, (example,), str(tmp), input_names=["crops"], output_names=["probs", "attention"],
        dynamic_axes={"crops": {0: "batch"}, "probs": {0: "batch"}, "attention": {0: "batch"}},
        opset_version=17, do_constant_folding=True, dynamo=False,
    )
    onnx_model = onnx.load(str(tmp))
    entries = {"charset": config.charset, "model": "anpr-edge attention-ocr", "max_len": str(config.max_len),
               "input": f"crops float32 [batch, 3, {config.height}, {config.width}] RGB 0..1",
               "config": json.dumps(config.to_dict()), **(metadata or {})}
    del onnx_model.metadata_props[:]
    for key, value in entries.items():
        prop = onnx_model.metadata_props.add()
        prop.key, prop.value = key, value
    onnx.checker.check_model(onnx_model)
    onnx.save(onnx_model, str(tmp))
    model.eval()  # the exporter restores the mode it found; be explicit for the check below
    session = ort.InferenceSession(str(tmp), providers=["CPUExecutionProvider"])
    check = torch.rand(3, 3, config.height, config.width)
    with torch.no_grad():
        expected = model(check)[0].numpy()
    got = session.run(["probs"], {"crops": check.numpy()})[0]
    if not np.allclose(expected, got, atol=1e-4):
        raise RuntimeError(f"ONNX export differs from PyTorch (max diff {np.abs(expected - got).max():.2e})")
    os.replace(tmp, path)
    return path
