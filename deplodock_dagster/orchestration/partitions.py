"""The `recipes` partitions: one dynamic partition key per recipe folder.

Keys are folder names under the recipes directory (e.g. `glm-4.6-fp8`, `tiny-cpu`). The
`recipes_sensor` keeps them in step with the folder; tests and the CLI add keys directly.
"""

from __future__ import annotations

from dagster import DynamicPartitionsDefinition

RECIPES_PARTITIONS_NAME = "recipes"

recipes_partitions = DynamicPartitionsDefinition(name=RECIPES_PARTITIONS_NAME)
