"""Executes a Jupyter notebook top to bottom in a fresh kernel (nbclient) and writes the
executed copy, outputs included, to --out. Fails on the first cell that raises."""

import argparse

import nbclient
import nbformat


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("notebook")
    parser.add_argument("--out", required=True, help="where the executed notebook is written")
    parser.add_argument("--timeout", type=int, default=300, help="seconds per cell")
    args = parser.parse_args()
    notebook = nbformat.read(args.notebook, as_version=4)
    client = nbclient.NotebookClient(notebook, timeout=args.timeout, kernel_name="python3")
    try:
        client.execute()
    finally:
        # Outputs only: no run timings, so a rerun on the same data changes only the pictures'
        # and tables' content.
        for cell in notebook.cells:
            cell.metadata.pop("execution", None)
        nbformat.write(notebook, args.out)


if __name__ == "__main__":
    main()
