"""The viewer's command line: its data files are read as yaml2etcd reads them."""

from __future__ import annotations

from trio_etcd_tree._cli import viewer


def test_load_data_keeps_values_as_written() -> None:
    data = viewer.load_data(
        "a: NO\nmode: 0755\nn: !!int 5\nt: !!bool yes\nl: [{x: 1}, y]\nm: [!!int 5]\n"
    )
    assert data == {
        "a": "NO",
        "mode": "0755",
        "n": "5",
        "t": "true",
        "l": "- x: '1'\n- y",
        "m": "- 5",
    }
    assert all(type(v) is str for v in data.values())
