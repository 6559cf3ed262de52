"""What makes an exported model folder travel: an adapter model (LoRA, IA3) stores only its adapter weights and
names the backbone they adapt. When that backbone is a folder on this machine (the embedded ChemLM-mini, a
pretrained one), the export carries a copy of it, named relative to the model, so the folder predicts anywhere."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from .model import BASE_BACKBONE
from .spec import REGRESSOR_FILE

__all__ = ["bundle_base_backbones"]


def bundle_base_backbones(folder: Path) -> list[Path]:
    """Copy into ``folder`` the local base backbone of every adapter model in it (an ensemble's members too) and
    point its ``regressor.json`` at the copy. Returns the regressor folders changed; a hub id is left as it is."""
    changed = []
    for meta_path in sorted(folder.rglob(REGRESSOR_FILE)):
        meta = json.loads(meta_path.read_text())
        base = Path(str(meta.get("backbone_source", "")))
        if not meta.get("adapter") or not base.is_dir():
            continue
        shutil.copytree(base, meta_path.parent / BASE_BACKBONE)
        meta["backbone_source"] = BASE_BACKBONE
        meta_path.write_text(json.dumps(meta, indent=2))
        changed.append(meta_path.parent)
    return changed
