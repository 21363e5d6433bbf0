"""The README's main job: `crystaldos card` on the embedded default."""

from crystaldos.cli import main


def test_card_command_writes_card_and_figures(tmp_path, capsys):
    main(["card", "--out", str(tmp_path)])
    printed = capsys.readouterr().out
    assert "CrystalDOSDataset(" in printed and "| structures |" in printed
    card = (tmp_path / "CARD.md").read_text()
    import crystaldos

    method = crystaldos.load_dataset().attrs["labeller_method"]  # the labeller the embedded set was built with
    assert method == "GFN2-xTB" and f"tblite {method}" in card and "python -m crystaldos.data.build" in card
    for name in ("card.png", "examples.png"):
        assert (tmp_path / name).stat().st_size > 10_000
