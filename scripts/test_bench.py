"""Tests of scripts/bench.py's result handling (no QEMU): the median and
range of repeated runs, and the table cells that show them."""

import os
import sys
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench  # noqa: E402


class Args:
    con_kib = 1024
    blk_mib = 32


class CombineTest(unittest.TestCase):
    def test_median_and_range_of_three_runs(self):
        runs = [{"blk_write4k": {"insn": v, "s": w}} for v, w in ((54.0, 1.2), (52.0, 1.0), (53.0, 1.5))]
        r = bench.combine(runs)["blk_write4k"]
        self.assertEqual(r["insn"], 53.0)
        self.assertEqual(r["insn_range"], [52.0, 54.0])
        self.assertEqual(r["s"], 1.2)

    def test_even_count_takes_the_mean_of_the_middle_two(self):
        r = bench.combine([{"con": {"insn": 10.0}}, {"con": {"insn": 20.0}}])["con"]
        self.assertEqual(r["insn"], 15.0)

    def test_one_run_has_no_range_and_missing_values_are_skipped(self):
        r = bench.combine([{"boot": {"insn": 1264.0, "s": None}}])
        self.assertEqual(r, {"boot": {"insn": 1264.0}})

    def test_cells_show_the_range_only_where_runs_differ(self):
        a = Args()
        same = {"blk_read4k": {"insn": 48.7, "insn_range": [48.7, 48.7]}}
        self.assertEqual(bench.cell(same, "blk_read4k", "insn", a), "48.7 M")
        spread = {"blk_read4k": {"insn": 48.7, "insn_range": [47.9, 50.2]}}
        self.assertEqual(bench.cell(spread, "blk_read4k", "insn", a), "48.7 M (47.9-50.2)")
        self.assertEqual(bench.cell({}, "blk_read4k", "insn", a), "-")


if __name__ == "__main__":
    unittest.main()
