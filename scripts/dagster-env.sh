# Source me: pick DAGSTER_HOME and its dagster.yaml for this machine.
#   DAGSTER_PG_HOST set  -> Postgres storage (the repository's dagster.yaml)
#   otherwise            -> SQLite storage (deploy/dagster/sqlite/dagster.yaml)
# DAGSTER_HOME defaults to .dagster_home/<postgres|sqlite> in the repository; an existing
# DAGSTER_HOME is kept, and its dagster.yaml is replaced by the chosen one.
_deplodock_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [[ -n "${DAGSTER_PG_HOST:-}" ]]; then
  _deplodock_kind=postgres
  _deplodock_yaml=$_deplodock_root/dagster.yaml
  export DAGSTER_PG_PORT=${DAGSTER_PG_PORT:-5432}
  export DAGSTER_PG_USER=${DAGSTER_PG_USER:-postgres}
  export DAGSTER_PG_PASSWORD=${DAGSTER_PG_PASSWORD:-}
  export DAGSTER_PG_DB=${DAGSTER_PG_DB:-dagster}
else
  _deplodock_kind=sqlite
  _deplodock_yaml=$_deplodock_root/deploy/dagster/sqlite/dagster.yaml
fi
export DAGSTER_HOME=${DAGSTER_HOME:-$_deplodock_root/.dagster_home/$_deplodock_kind}
mkdir -p "$DAGSTER_HOME"
cp "$_deplodock_yaml" "$DAGSTER_HOME/dagster.yaml"
echo "dagster: $_deplodock_kind instance in $DAGSTER_HOME" >&2
unset _deplodock_root _deplodock_kind _deplodock_yaml
