"""The site's own price list: CSV import through ``edge prices import`` and the fill-in of search results."""

from __future__ import annotations

import pytest

from edge.cli import main
from edge.counter.prices import PriceError, PriceList, fen_from_yuan, parse_csv


def test_import_replaces_the_list_and_fills_search_results(tmp_path, capsys):
    csv = tmp_path / "p.csv"
    csv.write_text("med_list_codg,pric\nA1,12.80\nB2,1234567.5\n", encoding="utf-8")
    assert main(["prices", "import", str(csv), "--state-dir", str(tmp_path)]) == 0
    assert "已导入 2 个项目" in capsys.readouterr().out
    prices = PriceList.in_state_dir(tmp_path)
    got = prices.fill([{"med_list_codg": "A1", "pric": None}, {"med_list_codg": "C3", "pric": None},
                       {"med_list_codg": "B2", "pric": 99}])
    assert [g["pric"] for g in got] == [1280, None, 99]      # the catalogue's own price wins
    assert prices.lookup(["B2"]) == {"B2": 123456750}


def test_a_bad_row_names_its_line_and_keeps_the_old_list(tmp_path, capsys):
    PriceList.in_state_dir(tmp_path).replace(parse_csv(["code,price", "A1,1.00"]))
    csv = tmp_path / "bad.csv"
    csv.write_text("code,price\nA1,2.00\nB2,1.234\n", encoding="utf-8")
    assert main(["prices", "import", str(csv), "--state-dir", str(tmp_path)]) == 2
    assert "第3行" in capsys.readouterr().err
    assert PriceList.in_state_dir(tmp_path).lookup(["A1"]) == {"A1": 100}


@pytest.mark.parametrize("text", ["abc", "-1", "1.001", "nan", "inf", ""])
def test_prices_are_exact_yuan(text):
    with pytest.raises(PriceError):
        fen_from_yuan(text, where="第2行")
    assert fen_from_yuan("¥1,234.50", where="x") == 123450
