"""Well-known pretrained models, by the short names ``--model`` accepts.

Every entry points at ready-made ONNX towers on the Hugging Face Hub, so using
one needs no torch. ``pixsearch models`` prints this table.
"""

from __future__ import annotations

from dataclasses import dataclass

from .spec import Layout


@dataclass(frozen=True)
class KnownModel:
    name: str
    repo: str
    """Hugging Face Hub repository holding the ONNX export."""
    layout: Layout
    """immich, transformers.js or transformers (see spec.py)."""
    dim: int
    languages: str
    summary: str
    gflops_per_image: float
    """Image-tower cost, the main CPU cost of indexing."""
    xm3600_en: float | None = None
    """Published Crossmodal-3600 text-to-image recall (mean of R@1/5/10, %, Immich's table), English."""
    xm3600_zh: float | None = None
    """The same in Chinese."""
    coco_t2i_recall_at_5: float | None = None
    """Published text-to-image Recall@5 on MS-COCO 5k (open_clip's results), where known."""


REGISTRY: dict[str, KnownModel] = {
    m.name: m
    for m in (
        KnownModel(
            name="ViT-B-32__openai",
            repo="immich-app/ViT-B-32__openai",
            layout="immich",
            dim=512,
            languages="en",
            summary="OpenAI CLIP ViT-B/32, the model of Milvus' tutorial; the cheapest on CPU (default)",
            gflops_per_image=8.8,
            xm3600_en=59.37,
            coco_t2i_recall_at_5=0.5594,
        ),
        KnownModel(
            name="ViT-B-32-SigLIP2-256__webli",
            repo="immich-app/ViT-B-32-SigLIP2-256__webli",
            layout="immich",
            dim=768,
            languages="en (fair on others)",
            summary="Google SigLIP2 B/32 at 256 px: far better recall for ~1.3x the CPU cost",
            gflops_per_image=11.5,
            xm3600_en=73.15,
            xm3600_zh=62.56,
        ),
        KnownModel(
            name="ViT-B-16-SigLIP2__webli",
            repo="immich-app/ViT-B-16-SigLIP2__webli",
            layout="immich",
            dim=768,
            languages="en (fair on others)",
            summary="Google SigLIP2 B/16 at 224 px: the best recall here, ~4x the CPU cost",
            gflops_per_image=35.0,
            xm3600_en=75.19,
            xm3600_zh=64.39,
        ),
        KnownModel(
            name="XLM-Roberta-Base-ViT-B-32__laion5b_s13b_b90k",
            repo="immich-app/XLM-Roberta-Base-ViT-B-32__laion5b_s13b_b90k",
            layout="immich",
            dim=512,
            languages="100 (XLM-RoBERTa): French, Chinese, ...",
            summary="multilingual open_clip: XLM-R text tower, ViT-B/32 image tower (cheap to index)",
            gflops_per_image=8.8,
            xm3600_en=68.33,
            xm3600_zh=72.52,
            coco_t2i_recall_at_5=0.6344,
        ),
        KnownModel(
            name="chinese-clip-vit-base-patch16",
            repo="OFA-Sys/chinese-clip-vit-base-patch16",
            layout="transformers",
            dim=512,
            languages="zh, en",
            summary="Chinese-CLIP ViT-B/16 (transformers checkpoint: converted once, needs the torch extra)",
            gflops_per_image=35.0,
        ),
        KnownModel(
            name="clip-vit-base-patch32",
            repo="Xenova/clip-vit-base-patch32",
            layout="transformers.js",
            dim=512,
            languages="en",
            summary="OpenAI CLIP ViT-B/32 as exported for transformers.js",
            gflops_per_image=8.8,
            xm3600_en=59.37,
            coco_t2i_recall_at_5=0.5594,
        ),
    )
}
