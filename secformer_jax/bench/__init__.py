"""Cost harness: operators and whole models under SPU, modelled network time, reports."""
