import pytest

from batch_pipeline.spec import BatchSpec, SpecError


def test_template_columns_in_order_of_use():
    spec = BatchSpec(name="s", model="m", system_prompt="About {b}", prompt="{a} and {b} and {a}")
    assert spec.template_columns() == ["b", "a"]


@pytest.mark.parametrize(
    "prompt, fragment",
    [
        ("{a.b}", "bare column"),
        ("{a!r}", "bare column"),
        ("{a:>10}", "bare column"),
        ("{0}", "bare column"),
        ("unclosed {a", "not a valid template"),
    ],
)
def test_bad_templates_name_the_spec_and_template(prompt, fragment):
    with pytest.raises(SpecError, match=fragment) as info:
        BatchSpec(name="leaflets", model="m", prompt=prompt)
    assert "leaflets" in str(info.value)


def test_reserved_parameters_and_limits_are_refused():
    with pytest.raises(SpecError, match="model"):
        BatchSpec(name="s", model="m", prompt="{a}", parameters={"model": "x"})
    with pytest.raises(SpecError, match="max_requests_per_shard"):
        BatchSpec(name="s", model="m", prompt="{a}", max_requests_per_shard=50_001)
    with pytest.raises(SpecError, match="endpoint"):
        BatchSpec(name="s", model="m", prompt="{a}", endpoint="/v1/unknown")
