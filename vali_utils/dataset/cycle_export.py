"""A consensus cycle's outcome -> its dataset export: what the evaluator calls after weights.

exporter = DatasetExporter(open_storage(settings.dataset_url, settings.s3), reader, hotkey,
                           max_file_bytes=settings.s3.max_file_bytes)
evaluator = EnhancedMinerEvaluator(..., dataset=CycleExport(exporter))
"""

from __future__ import annotations

import logging

from config.settings import Settings
from vali_utils.assignments import S3Access
from vali_utils.cycle import CycleOutcome
from vali_utils.dataset.parquet import DatasetUnavailable, arrow_schema
from vali_utils.dataset.publish import DatasetExporter, ExportJob
from vali_utils.dataset.storage import open_storage

logger = logging.getLogger(__name__)

MAX_EXPORT_S = 600.0


class CycleExport:
    def __init__(self, exporter: DatasetExporter) -> None:
        self.exporter = exporter

    async def __call__(self, outcome: CycleOutcome) -> dict:
        """Publish the outcome's epoch; a summary for the cycle report. Never raises."""
        if outcome.confirmed is None or outcome.block is None:
            return {"status": "nothing_to_export"}
        job = ExportJob(
            epoch=outcome.block.epoch,
            plan_hash=outcome.plan.plan_hash,
            confirmed=outcome.confirmed,
            files=outcome.uploads,
            states=outcome.block.states,
        )
        return await self.exporter.publish(job)


def dataset_export(settings: Settings, access: S3Access | None, hotkey: str) -> CycleExport | None:
    """The validator's export after each cycle, or None when off (the default) or impossible.

    Impossible means pyarrow is missing, or no way to read miners' files (the
    records' fields are in them): logged as an error once, and the validator
    runs on without a dataset.
    """
    if not settings.dataset_export or not settings.dataset_url:
        return None
    if access is None:
        logger.error(
            "dataset export is on but this validator cannot read miners' files (set"
            " DATA_API_URL, or S3_BUCKET with credentials); continuing without it"
        )
        return None
    try:
        arrow_schema("listings")
    except DatasetUnavailable as exc:
        logger.error("dataset export is on but cannot run: %s; continuing without it", exc)
        return None
    storage = open_storage(settings.dataset_url, settings.s3)
    logger.info("publishing each epoch's dataset to %s", storage.location)
    exporter = DatasetExporter(
        storage,
        access.reader,
        hotkey,
        max_file_bytes=settings.s3.max_file_bytes,
        # Miners' keys must sit under the prefix the S3 audit checks them against.
        key_prefix=access.settings.prefix,
        # An export runs between cycles: it may take a quarter of an epoch, at most 10 min.
        timeout_s=max(5.0, min(MAX_EXPORT_S, settings.cycle_seconds / 4)),
    )
    return CycleExport(exporter)
