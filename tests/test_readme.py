"""The README documents every setting with its default (generated from mimetic.config)."""

from mimetic.config import Settings
from mimetic.readme import README, render_readme


def test_readme_configuration_table_matches_settings() -> None:
    text = README.read_text()
    assert render_readme(text) == text, "run `mimetic config --update-readme`"
    for name in Settings.model_fields:
        assert f"`MIMETIC_{name.upper()}`" in text


def test_readme_quick_start_has_the_two_commands() -> None:
    text = README.read_text()
    assert "bin/mimetic demo" in text and "bin/mimetic test" in text
