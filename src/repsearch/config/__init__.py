"""Configuration: the settings' schema, presets and overlays, `--set` overrides, validation.

    from repsearch.config import resolve
    cfg = resolve("quickstart", ["search.generations=[10,5,5,2]"])
"""
from .assemble import (
                     OVERLAY_DIR,
                     PRESET_DIR,
                     from_dict,
                     list_overlays,
                     list_presets,
                     load_preset,
                     resolve,
                     with_overrides,
)
from .schema import (
                     BaselineConfig,
                     Config,
                     DataConfig,
                     EngineConfig,
                     LearnConfig,
                     LogConfig,
                     ModelConfig,
                     RunConfig,
                     SearchConfig,
                     TrainConfig,
)

__all__ = ["Config", "DataConfig", "ModelConfig", "TrainConfig", "BaselineConfig", "SearchConfig", "EngineConfig",
           "LearnConfig", "RunConfig", "LogConfig", "resolve", "from_dict", "with_overrides", "load_preset",
           "list_presets", "list_overlays", "PRESET_DIR", "OVERLAY_DIR"]
