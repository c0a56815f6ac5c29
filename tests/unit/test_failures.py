"""The library's errors as Dagster failures: one hierarchy, one translation."""

import dagster as dg
import pytest

from batch_pipeline import BatchSpec, CsvSource, UseCase, errors
from batch_pipeline.dagster.failures import as_failures
from batch_pipeline.dagster.jobs import asset_key, record_keys, results_job, submit_job


@pytest.mark.parametrize(("error", "retried"), [
    (errors.SpecError, False),
    (errors.ProviderSettingError, False),
    (errors.SubmissionBlocked, False),
    (errors.PartitionBusy, False),
    (errors.StateVersionError, False),
    (errors.UnpricedModel, False),
    (errors.ProviderUnavailable, True),
])
def test_an_error_fails_the_run_naming_its_subject_retried_only_if_a_retry_can_help(error, retried):
    with pytest.raises(dg.Failure) as failed, as_failures("notes 2026-11-20"):
        raise error("the reason")
    assert failed.value.description == "notes 2026-11-20: the reason"
    assert failed.value.allow_retries is retried


def test_a_message_that_names_its_subject_is_not_prefixed_again():
    with pytest.raises(dg.Failure) as failed, as_failures("spec 'notes'"):
        raise errors.UnpricedModel("spec 'notes': model 'x' has no price")
    assert failed.value.description == "spec 'notes': model 'x' has no price"


def test_other_errors_pass_through():
    with pytest.raises(KeyError), as_failures("notes"):
        raise KeyError("not ours")


def test_errors_keep_their_builtin_bases():
    assert issubclass(errors.SpecError, ValueError) and issubclass(errors.SourceError, ValueError)
    assert issubclass(errors.PartitionBusy, RuntimeError) and issubclass(errors.UnpricedModel, LookupError)
    assert all(issubclass(getattr(errors, name), errors.BatchPipelineError)
               for name in dir(errors) if name[0].isupper() and name != "BatchPipelineError")


def test_keys_and_jobs_are_derived_once_per_use_case(tmp_path):
    csv = tmp_path / "t.csv"
    csv.write_text("id,text\n1,a\n")
    spec = BatchSpec(name="notes", model="gpt-4o-mini", prompt="{text}")
    uc = UseCase(spec, CsvSource(path=str(csv), key="id"), key_prefix=("team",))
    again = UseCase(spec, CsvSource(path=str(csv), key="id"), key_prefix=("team",))
    assert asset_key(uc, "results") == dg.AssetKey(["team", "notes", "results"])
    assert record_keys(uc) == [asset_key(uc, "batches"), asset_key(uc, "results")]
    assert submit_job(uc).name == "team__notes_submit" and results_job(uc).name == "team__notes_results"
    assert submit_job(uc) is submit_job(again)
