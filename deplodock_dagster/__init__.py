"""deplodock-dagster: deploy LLM inference engines on GPU machines, benchmark them, report.

Importing the package does no I/O and pulls in no heavy library (pandas, paramiko,
googleapiclient, dagster): each is imported where it is used.
"""

__version__ = "0.1.0"
