"""Export is opt-in, and a failed export is logged, reported and never holds back weights."""

from __future__ import annotations

import asyncio
import logging

import pytest

from config.setting import SettingsError
from config.settings import load_settings
from config.storage import S3Settings
from consensus.provenance import ConfirmedRecord, ConfirmedSet
from tests.unit import test_evaluator_schedule as schedule
from vali_utils.assignments import S3Access
from vali_utils.dataset.cycle_export import CycleExport, dataset_export
from vali_utils.dataset.publish import DatasetExporter, ExportJob, published_epochs
from vali_utils.dataset.storage import LocalStorage
from vali_utils.s3_reader import DirectS3Reader

pytestmark = pytest.mark.unit
CHAIN = {"CHAIN_FILE": "/tmp/chain.json"}


class BrokenStorage(LocalStorage):
    """A bucket that refuses every write (credentials revoked, say)."""

    def put(self, key: str, data: bytes) -> None:
        raise PermissionError(f"AccessDenied: {key}")


def job(records: int = 0) -> ExportJob:
    """An epoch with ``records`` confirmed records (an empty epoch is published too)."""
    confirmed = tuple(ConfirmedRecord("77494", i, 5, 0.9, 3, 3, False) for i in range(records))
    return ExportJob(7, "plan", ConfirmedSet(confirmed, {}), {})


def test_off_by_default_and_on_only_with_a_place_to_go(tmp_path):
    settings, _ = load_settings("validator", [], environ=CHAIN)
    assert settings.dataset_export is False
    assert dataset_export(settings, None, "5F") is None
    with pytest.raises(SettingsError, match=r"dataset\.url"):
        load_settings("validator", ["--dataset.export"], environ=CHAIN)
    on, _ = load_settings(
        "validator", [], environ={**CHAIN, "DATASET_EXPORT": "1", "DATASET_URL": str(tmp_path)}
    )
    pytest.importorskip("pyarrow", reason="the dataset extra (pyarrow) is not installed")
    assert dataset_export(on, None, "5F") is None  # no way to read miners' files
    access = S3Access(DirectS3Reader.from_settings(S3Settings(bucket="miners")), S3Settings())
    assert isinstance(dataset_export(on, access, "5F"), CycleExport)
    asyncio.run(access.reader.close())


def test_a_failed_export_is_logged_and_reported(tmp_path, caplog):
    pytest.importorskip("pyarrow", reason="the dataset extra (pyarrow) is not installed")
    exporter = DatasetExporter(BrokenStorage(tmp_path), None, "5F", max_file_bytes=1024)
    with caplog.at_level(logging.ERROR):
        summary = asyncio.run(exporter.publish(job()))
    assert summary["status"] == "failed" and "AccessDenied" in summary["error"]
    assert "dataset export failed" in caplog.text and "Traceback" in caplog.text


def test_an_epoch_whose_files_cannot_be_read_is_not_published(tmp_path):
    pytest.importorskip("pyarrow", reason="the dataset extra (pyarrow) is not installed")
    storage = LocalStorage(tmp_path)
    exporter = DatasetExporter(storage, None, "5F", max_file_bytes=1024)  # reads nothing
    summary = asyncio.run(exporter.publish(job(records=3)))
    assert summary["status"] == "failed" and "ExportIncomplete" in summary["error"]
    assert published_epochs(storage) == []


def test_weights_are_set_before_the_export_and_whatever_it_does(tmp_path, monkeypatch):
    pytest.importorskip("pyarrow", reason="the dataset extra (pyarrow) is not installed")
    exporter = DatasetExporter(BrokenStorage(tmp_path), None, "5F", max_file_bytes=1024)
    events: list[str] = []
    set_weights = schedule.Chain.set_weights

    async def recorded_set_weights(self, weights):
        events.append("weights")
        await set_weights(self, weights)

    async def failing_export(outcome) -> dict:
        summary = await exporter.publish(job())
        events.append(summary["status"])
        return summary

    monkeypatch.setattr(schedule.Chain, "set_weights", recorded_set_weights)
    run = schedule.simulate(
        tmp_path, schedule.CLOCK.start(schedule.FIRST), max_cycles=2, dataset=failing_export
    )
    assert len(run.cycle.runs) == 2
    assert events == ["weights", "failed", "weights", "failed"]
