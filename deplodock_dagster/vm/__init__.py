"""VM providers behind one small interface (see vm/types.py).

Only deploy/cloud.py imports provider modules; bench and orchestration go through it.
"""

from deplodock_dagster.vm.types import VMConnectionInfo, VMProvider, VMSpec, VMSummary

__all__ = ["VMConnectionInfo", "VMProvider", "VMSpec", "VMSummary"]
