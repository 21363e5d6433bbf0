"""The README's main job: `crystaldos card` on the embedded default."""

from crystaldos.cli import main


def test_card_command_writes_card_and_figures(tmp_path, capsys):
    main(["card", "--out", str(tmp_path)])
    printed = capsys.readouterr().out
    assert "CrystalDOSDataset(" in printed and "| structures |" in printed
    card = (tmp_path / "CARD.md").read_text()
    assert "GFN1-xTB" in card and "python -m crystaldos.data.build" in card
    for name in ("card.png", "examples.png"):
        assert (tmp_path / name).stat().st_size > 10_000
