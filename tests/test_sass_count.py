"""Counting the instructions a kernel issues from its SASS listing (benchmarks/sass_count.py), on a
hand-written listing: straight code once, a loop body once per trip, an inner loop per outer trip."""
import importlib.util
from pathlib import Path


def _sass_count():
    spec = importlib.util.spec_from_file_location("sass_count", Path(__file__).parents[1] / "benchmarks/sass_count.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


LISTING = """
        /*0000*/                   MOV R1, c[0x0][0x28] ;
.L_x_0:
	//## File "/src/k.py", line 5
        /*0010*/                   LDG.E R2, desc[UR4][R4.64] ;
        /*0020*/                   FADD R3, R3, R2 ;
.L_x_1:
	//## File "/src/k.py", line 9
        /*0030*/                   FFMA R5, R6, R7, R5 ;
        /*0040*/               @!P1 BRA `(.L_x_1) ;
        /*0050*/               @!P0 BRA `(.L_x_0) ;
.L_x_2:
        /*0060*/                   FMUL R8, R8, R8 ;
        /*0070*/               @!P2 BRA `(.L_x_2) ;
        /*0080*/                   EXIT ;
.L_x_3:
        /*0090*/                   BRA `(.L_x_3);
"""


def test_each_loop_body_counts_once_per_trip_and_an_inner_loop_once_per_outer_trip():
    count = _sass_count().issued_per_thread
    # 10 instructions once; the outer loop's 5 (with its inner loop's 2) 3 more times; the inner
    # loop's 2 another 9 times per outer trip (10 trips); the second loop's 2 7 more times; the
    # self-branch at the end (a trap) is not a loop
    assert count(LISTING, [4, 8], 10) == 10 + 5 * 3 + 2 * 9 * 4 + 2 * 7 == 111
    assert count(LISTING, [4, 8], 1) == 10 + 5 * 3 + 2 * 7
    assert count(LISTING, [4], 10) is None  # two channel loops found where one was expected


def test_what_issues_is_attributed_to_the_source_line_named_before_it():
    by_source = _sass_count().issued_by_source(LISTING, [4, 8], 10)
    # line 5: LDG, FADD 4 times each; line 9: the FFMA and inner branch 40 times, the outer
    # branch 4 times, the second loop's 2 instructions 8 times each, EXIT and the trap once
    assert by_source == {None: 1, ("/src/k.py", 5): 8, ("/src/k.py", 9): 40 * 2 + 4 + 2 * 8 + 2}
    assert sum(by_source.values()) == 111
