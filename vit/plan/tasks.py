"""The VTAB-1k task table (paper Table 9, App. D.3): torch-free, so that the workflow plans VTAB
presets at parse time; `vit.data.sources` reads the tasks' folders, `vit.report.vtab` orders its tables.
"""
from __future__ import annotations

from dataclasses import dataclass

from vit.errors import ConfigError


@dataclass(frozen=True)
class VtabTask:
    folder: str       # folder name in the de-facto vtab-1k/ archive
    classes: int
    group: str        # natural | specialized | structured
    paper: str        # column name in the paper's Table 9 (reference.yaml vtab_table9.task_order)
    aliases: tuple[str, ...] = ()


# The 19 VTAB-1k tasks in the paper's Table 9 order (App. D.3; vit/reference.yaml vtab_table9).
VTAB_TASKS = (
    VtabTask("caltech101", 102, "natural", "Caltech101", ("caltech",)),
    VtabTask("cifar", 100, "natural", "CIFAR-100", ("cifar100", "cifar-100")),
    VtabTask("dtd", 47, "natural", "DTD"),
    VtabTask("oxford_flowers102", 102, "natural", "Flowers102", ("flowers102", "flowers")),
    VtabTask("oxford_iiit_pet", 37, "natural", "Pets", ("oxford_pet", "pets")),
    VtabTask("sun397", 397, "natural", "Sun397", ("sun",)),
    VtabTask("svhn", 10, "natural", "SVHN", ("svhn_cropped",)),
    VtabTask("patch_camelyon", 2, "specialized", "Camelyon", ("pcam", "camelyon")),
    VtabTask("eurosat", 10, "specialized", "EuroSAT"),
    VtabTask("resisc45", 45, "specialized", "Resisc45", ("resisc",)),
    VtabTask("diabetic_retinopathy", 5, "specialized", "Retinopathy", ("retinopathy", "dr")),
    VtabTask("clevr_count", 8, "structured", "Clevr-Count", ("clevr-count", "clevr_count_all")),
    VtabTask("clevr_dist", 6, "structured", "Clevr-Dist", ("clevr_distance", "clevr-dist",
                                                            "clevr_closest_object_distance")),
    VtabTask("dmlab", 6, "structured", "DMLab"),
    VtabTask("dsprites_loc", 16, "structured", "dSpr-Loc", ("dsprites_location", "dspr-loc")),
    VtabTask("dsprites_ori", 16, "structured", "dSpr-Ori", ("dsprites_orientation", "dspr-ori")),
    VtabTask("kitti", 4, "structured", "KITTI-Dist", ("kitti_dist", "kitti-dist",
                                                      "kitti_closest_vehicle_distance")),
    VtabTask("smallnorb_azi", 18, "structured", "sNORB-Azim", ("smallnorb_azimuth", "snorb-azim")),
    VtabTask("smallnorb_ele", 9, "structured", "sNORB-Elev", ("smallnorb_elevation", "snorb-elev")),
)
VTAB_SPLITS = ("train800", "val200", "train800val200", "test")


def vtab_task(name: str) -> VtabTask:
    """Resolve a task folder name or one of its aliases (case-insensitive)."""
    key = name.lower()
    for task in VTAB_TASKS:
        if key == task.folder or key in task.aliases or key == task.paper.lower():
            return task
    raise ConfigError(f"unknown VTAB-1k task {name!r}; known: {', '.join(t.folder for t in VTAB_TASKS)} "
                    f"(and their aliases)")
