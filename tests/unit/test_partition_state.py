"""The partition state machine as a table of states x events, with no Dagster and no provider."""

from __future__ import annotations

import dataclasses

import pytest

from batch_pipeline.state.machine import (
    NOT_HARVESTED,
    NOTHING_SUBMITTED,
    RETRY_IN_FLIGHT,
    STRAY_ROUND,
    Admit,
    Blocked,
    Build,
    Done,
    Harvest,
    Harvested,
    ProviderReport,
    QueueRetry,
    RebuildAsked,
    Resubmit,
    Submit,
    SubmitAsked,
    Wait,
    next_action,
)
from batch_pipeline.state.partition_state import (
    SCHEMA_VERSION,
    PartitionState,
    Queued,
    StateVersionError,
    Submission,
)

NOW = 1_000_000.0


def sub(batch_id: str, attempt: int = 1, tokens: int = 100) -> Submission:
    return Submission(0, attempt, f"uc/requests/partition=p/{batch_id}.jsonl", batch_id, "file", "key",
                      "validating", 10, tokens)


def queued(attempt: int, not_before: float = NOW - 1, tokens: int = 100) -> Queued:
    return Queued(0, attempt, f"uc/requests/partition=p/q{attempt}.jsonl", 10, tokens, not_before,
                  "retry" if attempt > 1 else "enqueued_token_limit")


def state(submissions=(), queue=(), harvested=(), written=False) -> PartitionState:
    return PartitionState("uc", "p", tuple(submissions), tuple(queue), tuple(harvested), written)


def report(limit: int | None = None, enqueued: int = 0, **statuses: str) -> ProviderReport:
    return ProviderReport(statuses, NOW, enqueued, limit)


IN_FLIGHT = state([sub("b1"), sub("b2")])
HARVESTED = state([sub("b1")], harvested=["b1"], written=True)
RETRY_SENT = state([sub("b1"), sub("b2", attempt=2)], harvested=["b1"], written=True)
RETRY_QUEUED = state([sub("b1")], [queued(2)], harvested=["b1"], written=True)
RETRY_LATER = state([sub("b1")], [queued(2, not_before=NOW + 60)], harvested=["b1"], written=True)
CAPACITY_WAIT = state([sub("b1", tokens=900)], [queued(1, tokens=200)])
EMPTY_SUBMITTED = state()  # every row rejected or carried: results still to be written


@pytest.mark.parametrize(
    ("given", "event", "expected"),
    [
        # the requests asset wants to rebuild
        (None, RebuildAsked(), Build()),
        (IN_FLIGHT, RebuildAsked(), Blocked(NOT_HARVESTED)),
        (HARVESTED, RebuildAsked(), Build()),
        (RETRY_SENT, RebuildAsked(), Blocked(RETRY_IN_FLIGHT)),
        (RETRY_QUEUED, RebuildAsked(), Blocked(RETRY_IN_FLIGHT)),
        (HARVESTED, RebuildAsked(stray_rounds=("r.jsonl",)), Blocked(STRAY_ROUND)),
        # the batches asset wants to submit
        (None, SubmitAsked(), Submit()),
        (HARVESTED, SubmitAsked(), Submit()),
        (RETRY_SENT, SubmitAsked(), Blocked(RETRY_IN_FLIGHT)),
        (IN_FLIGHT, SubmitAsked(stray_rounds=("r.jsonl",)), Blocked(STRAY_ROUND)),
        # what the provider reports
        (None, report(), Blocked(NOTHING_SUBMITTED)),
        (IN_FLIGHT, report(b1="in_progress", b2="completed"), Wait("1/2 batches terminal", ("b1",))),
        (IN_FLIGHT, report(b1="completed"), Wait("1/2 batches terminal", ("b2",))),  # b2 not seen
        (IN_FLIGHT, report(b1="completed", b2="expired"), Harvest(("b1", "b2"))),
        (IN_FLIGHT, report(b1="failed", b2="cancelled"), Harvest(("b1", "b2"))),
        (EMPTY_SUBMITTED, report(), Harvest(())),
        (HARVESTED, report(), Done()),
        (RETRY_SENT, report(b2="finalizing"), Wait("0/1 batches terminal", ("b2",))),
        (RETRY_SENT, report(b2="completed"), Harvest(("b2",))),
        (RETRY_QUEUED, report(), Resubmit((queued(2),))),
        (RETRY_LATER, report(), Wait("1 retry shards wait for their backoff or for capacity")),
        (RETRY_QUEUED, report(limit=150, enqueued=100), Wait("1 retry shards wait for their backoff or for capacity")),
        (CAPACITY_WAIT, report(limit=1000, enqueued=900, b1="in_progress"), Wait("0/1 batches terminal", ("b1",))),
        (CAPACITY_WAIT, report(limit=1000, enqueued=900, b1="completed"),
         Wait("1 shards wait for enqueued-token capacity")),
        (CAPACITY_WAIT, report(limit=1000, enqueued=0, b1="completed"), Admit((queued(1, tokens=200),))),
        (CAPACITY_WAIT, report(limit=1000, enqueued=700, b1="in_progress"), Admit((queued(1, tokens=200),))),
        # a shard bigger than the whole limit goes alone rather than waiting forever
        (state([], [queued(1, tokens=5000)]), report(limit=1000), Admit((queued(1, tokens=5000),))),
        # after a harvest
        (HARVESTED, Harvested(()), Done()),
        (HARVESTED, Harvested(("r1", "r2")), QueueRetry(("r1", "r2"), 2)),
        (RETRY_QUEUED, Harvested(("r1", "r2"), frozenset({"r1"})), QueueRetry(("r2",), 3)),
        (RETRY_QUEUED, Harvested(("r1",), frozenset({"r1"})), Done()),
    ],
)
def test_next_action(given: PartitionState | None, event, expected) -> None:
    assert next_action(given, event) == expected


def test_state_round_trips_through_its_json_document() -> None:
    original = dataclasses.replace(RETRY_QUEUED, record_id=7, recorded_at=NOW)
    document = original.to_json()
    assert document["schema_version"] == SCHEMA_VERSION
    assert PartitionState.from_json(document, 7, NOW) == original


def test_fields_an_older_version_lacked_take_their_defaults() -> None:
    document = RETRY_SENT.to_json()
    document["schema_version"] = SCHEMA_VERSION - 1
    del document["results_written"]  # a field an older version lacked
    del document["kept"]
    read = PartitionState.from_json(document)
    assert read.submissions == RETRY_SENT.submissions and read.results_written is False and read.kept == ()


@pytest.mark.parametrize("version", [0, 1, 2])
def test_older_versions_are_migrated(version: int) -> None:
    document = {**HARVESTED.to_json(), "schema_version": version}
    assert PartitionState.from_json(document).submissions == HARVESTED.submissions


def test_a_state_of_a_newer_version_is_refused_not_read_lossily() -> None:
    document = RETRY_SENT.to_json()
    document["schema_version"] = SCHEMA_VERSION + 1
    document["submissions"][0]["provider"] = "azure"  # a field a newer version added
    with pytest.raises(StateVersionError, match=f"schema_version {SCHEMA_VERSION + 1}, newer than version "
                                                f"{SCHEMA_VERSION} this code knows") as refused:
        PartitionState.from_json(document)
    assert "uc partition p" in str(refused.value)


def test_unversioned_records_read_as_version_zero() -> None:
    legacy = {"submissions": [dataclasses.asdict(sub("b1"))], "queued": [], "harvested_batch_ids": ["b1"]}
    read = PartitionState.from_json(legacy, 3, NOW, results_written=True)
    assert read.schema_version == 0 and read.harvested == ("b1",) and next_action(read, report()) == Done()


def test_a_rebuild_names_the_earlier_batches_whose_answers_it_kept() -> None:
    rebuilt = dataclasses.replace(state([sub("b3")]), kept=RETRY_SENT.keeping({"b2", "b9"}))
    assert [s.batch_id for s in rebuilt.batches] == ["b2", "b3"] and rebuilt.unharvested == (sub("b3"),)
    assert next_action(rebuilt, report(b3="completed")) == Harvest(("b3",))  # kept ones are not harvested again
    assert PartitionState.from_json(rebuilt.to_json()) == rebuilt


def test_a_state_records_the_status_the_provider_reported_last() -> None:
    reported = IN_FLIGHT.with_statuses({"b1": "completed"})
    assert [s.status for s in reported.submissions] == ["completed", "validating"]
