"""Every way a recipe can be wrong fails at load time, naming the file, field and expectation."""

from __future__ import annotations

import pytest

from deplodock_dagster.errors import RecipeError
from deplodock_dagster.recipe import check_recipe, load_recipe, resolve_variant
from tests.recipe_helpers import base, write_recipe


def _set(data: dict, dotted: str, value) -> dict:
    node = data
    *parents, last = dotted.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[last] = value
    return data


def _delete(data: dict, dotted: str) -> dict:
    node = data
    *parents, last = dotted.split(".")
    for part in parents:
        node = node[part]
    del node[last]
    return data


def _error(tmp_path, data) -> tuple[RecipeError, str]:
    file = write_recipe(tmp_path, data)
    with pytest.raises(RecipeError) as caught:
        load_recipe(file.parent)
    return caught.value, str(file)


# (id, change to the base recipe, expected field, expected fragments of the message)
CASES = [
    # GPU
    ("missing gpu", lambda d: _delete(d, "variants.2xH100.gpu"),
     "variants.2xH100.gpu", ["missing", "NVIDIA H200 141GB"]),
    ("unknown gpu", lambda d: _set(d, "variants.2xH100.gpu", "H900"),
     "variants.2xH100.gpu", ["unknown GPU 'H900'", "NVIDIA H100 80GB (h100)"]),
    ("ambiguous short name", lambda d: _set(d, "variants.2xH100.gpu", "a100"),
     "variants.2xH100.gpu", ["ambiguous", "NVIDIA A100 40GB", "NVIDIA A100 80GB"]),
    ("missing gpu_count", lambda d: _delete(d, "variants.2xH100.gpu_count"),
     "variants.2xH100.gpu_count", ["missing", "positive integer"]),
    # non-positive and huge counts
    ("zero gpu_count", lambda d: _set(d, "variants.2xH100.gpu_count", 0),
     "variants.2xH100.gpu_count", ["expected a positive integer, got 0"]),
    ("negative tp", lambda d: _set(d, "backend.vllm.tensor_parallel_size", -2),
     "backend.vllm.tensor_parallel_size", ["positive integer, got -2"]),
    ("zero pp", lambda d: _set(d, "backend.vllm.pipeline_parallel_size", 0),
     "backend.vllm.pipeline_parallel_size", ["positive integer, got 0"]),
    ("zero dp", lambda d: _set(d, "backend.vllm.data_parallel_size", 0),
     "backend.vllm.data_parallel_size", ["positive integer, got 0"]),
    ("zero prompts", lambda d: _set(d, "benchmark.num_prompts", 0),
     "benchmark.num_prompts", ["positive integer, got 0"]),
    ("negative concurrency", lambda d: _set(d, "benchmark.max_concurrency", -1),
     "benchmark.max_concurrency", ["positive integer, got -1"]),
    ("zero input len", lambda d: _set(d, "benchmark.random_input_len", 0),
     "benchmark.random_input_len", ["positive integer"]),
    ("missing output len", lambda d: _delete(d, "benchmark.random_output_len"),
     "benchmark.random_output_len", ["missing"]),
    ("huge gpu_count", lambda d: _set(d, "variants.2xH100.gpu_count", 10**40),
     "variants.2xH100.gpu_count", ["at most 64", "-bit integer"]),
    ("zero max_num_seqs", lambda d: _set(d, "backend.vllm.max_num_seqs", 0),
     "backend.vllm.max_num_seqs", ["positive integer"]),
    # whole instances
    ("gpu_count not a multiple", lambda d: _set(d, "variants.2xH100.gpu_count", 3),
     "variants.2xH100.gpu_count",
     ["3 is not a multiple of the 2 GPUs one instance needs", "tensor 2 x pipeline 1"]),
    ("tp*pp over gpu_count", lambda d: _set(d, "backend.vllm.pipeline_parallel_size", 2),
     "variants.2xH100.gpu_count", ["not a multiple of the 4 GPUs"]),
    # named flags in extra_args
    ("max-num-seqs in extra_args", lambda d: _set(d, "backend.vllm.extra_args",
                                                  "--max-num-seqs 512"),
     "backend.vllm.extra_args[0]", ["--max-num-seqs has a named field",
                                    "set backend.vllm.max_num_seqs"]),
    ("--flag=value form", lambda d: _set(d, "backend.vllm.extra_args",
                                         ["--enforce-eager", "--max-model-len=4096"]),
     "backend.vllm.extra_args[1]", ["--max-model-len has a named field",
                                    "backend.vllm.max_model_len"]),
    ("short -tp", lambda d: _set(d, "backend.vllm.extra_args", "-tp 2"),
     "backend.vllm.extra_args[0]", ["-tp has a named field", "tensor_parallel_size"]),
    ("underscore spelling", lambda d: _set(d, "backend.vllm.extra_args",
                                           "--gpu_memory_utilization 0.8"),
     "backend.vllm.extra_args[0]", ["gpu_memory_utilization"]),
    ("deploy-owned --port", lambda d: _set(d, "backend.vllm.extra_args", "--port 9000"),
     "backend.vllm.extra_args[0]", ["--port is set by deplodock itself"]),
    ("sglang --tp-size", lambda d: _set(d, "backend", {"sglang": {
        "tensor_parallel_size": 2, "extra_args": "--tp-size 2"}}),
     "backend.sglang.extra_args[0]", ["--tp-size has a named field",
                                      "backend.sglang.tensor_parallel_size"]),
    ("sglang --context-length", lambda d: _set(d, "backend", {"sglang": {
        "tensor_parallel_size": 2, "extra_args": ["--context-length=8192"]}}),
     "backend.sglang.extra_args[0]", ["backend.sglang.max_model_len"]),
    ("bench --num-prompts", lambda d: _set(d, "benchmark.extra_args", "--num-prompts 3"),
     "benchmark.extra_args[0]", ["set benchmark.num_prompts"]),
    # shell injection and odd characters
    ("semicolon", lambda d: _set(d, "backend.vllm.extra_args", "--enforce-eager;reboot"),
     "backend.vllm.extra_args[0]", ["not a plain flag or value", "';'"]),
    ("command substitution", lambda d: _set(d, "backend.vllm.extra_args",
                                            "--enforce-eager $(touch /tmp/x)"),
     "backend.vllm.extra_args[1]", ["'$'", "'('"]),
    ("backticks", lambda d: _set(d, "backend.vllm.extra_args", ["`id`"]),
     "backend.vllm.extra_args[0]", ["'`'"]),
    ("pipe and redirect", lambda d: _set(d, "backend.vllm.extra_args", ["a|b>c"]),
     "backend.vllm.extra_args[0]", ["'|'", "'>'"]),
    ("ampersand", lambda d: _set(d, "backend.vllm.extra_args", ["x&&y"]),
     "backend.vllm.extra_args[0]", ["'&'"]),
    ("newline in string", lambda d: _set(d, "backend.vllm.extra_args", "--a\n--b"),
     "backend.vllm.extra_args", ["line breaks"]),
    ("space inside a list item", lambda d: _set(d, "backend.vllm.extra_args", ["--a b"]),
     "backend.vllm.extra_args[0]", ["' '"]),
    ("unbalanced quote", lambda d: _set(d, "backend.vllm.extra_args", "--a 'b"),
     "backend.vllm.extra_args", ["cannot split"]),
    ("mapping in extra_args", lambda d: _set(d, "backend.vllm.extra_args", [{"a": 1}]),
     "backend.vllm.extra_args[0]", ["expected a string or number"]),
    # model names and images
    ("model traversal", lambda d: _set(d, "model.name", "../etc"),
     "model.name", ["invalid model name", "org/name"]),
    ("model injection", lambda d: _set(d, "model.name", "org/x;rm -rf ~"),
     "model.name", ["invalid model name"]),
    ("model without org", lambda d: _set(d, "model.name", "llama"),
     "model.name", ["invalid model name"]),
    ("model missing", lambda d: _delete(d, "model.name"),
     "model.name", ["missing", "org/name"]),
    ("model not a mapping", lambda d: _set(d, "model", "org/name"),
     "model", ["expected a mapping, got string"]),
    ("image injection", lambda d: _set(d, "backend.vllm.image", "vllm/x:v1$(id)"),
     "backend.vllm.image", ["invalid image", "registry/path:tag"]),
    ("image uppercase path", lambda d: _set(d, "backend.vllm.image", "Vllm/X:1"),
     "backend.vllm.image", ["invalid image"]),
    ("image without tag", lambda d: _set(d, "backend.vllm.image", "vllm/vllm-openai"),
     "backend.vllm.image", ["has no tag", "pin a tag"]),
    # extra_env
    ("env lowercase name", lambda d: _set(d, "extra_env", {"lower": "1"}),
     "extra_env.lower", ["invalid variable name", "[A-Z_][A-Z0-9_]*"]),
    ("env newline value", lambda d: _set(d, "extra_env", {"A": "x\nrm"}),
     "extra_env.A", ["line breaks"]),
    ("env shell syntax", lambda d: _set(d, "extra_env", {"A": "${HOME}`id`"}),
     "extra_env.A", ["value contains '$' '`'", "env files and shells"]),
    ("env secret", lambda d: _set(d, "extra_env", {"HF_TOKEN": "hf_abc"}),
     "extra_env.HF_TOKEN", ["looks like a secret"]),
    ("env bool", lambda d: _set(d, "extra_env", {"FLAG": True}),
     "extra_env.FLAG", ["expected a string or number", "quote"]),
    ("env as list", lambda d: _set(d, "extra_env", ["A=1"]),
     "extra_env", ["expected a mapping NAME: value"]),
    # wrong types
    ("string count", lambda d: _set(d, "variants.2xH100.gpu_count", "2"),
     "variants.2xH100.gpu_count", ["expected a positive integer, got string '2'"]),
    ("float concurrency", lambda d: _set(d, "benchmark.max_concurrency", 1.5),
     "benchmark.max_concurrency", ["positive integer, got 1.5"]),
    ("bool tp", lambda d: _set(d, "backend.vllm.tensor_parallel_size", True),
     "backend.vllm.tensor_parallel_size", ["positive integer, got True"]),
    ("benchmark as list", lambda d: _set(d, "benchmark", [1, 2]),
     "benchmark", ["expected a mapping, got list"]),
    ("memory fraction too big", lambda d: _set(d, "backend.vllm.gpu_memory_utilization", 1.5),
     "backend.vllm.gpu_memory_utilization", ["(0, 1]"]),
    ("memory fraction string", lambda d: _set(d, "backend.vllm.gpu_memory_utilization", "0.9"),
     "backend.vllm.gpu_memory_utilization", ["(0, 1]", "string"]),
    ("variants as list", lambda d: _set(d, "variants", ["2xH100"]),
     "variants", ["expected a mapping, got list"]),
    ("variant as string", lambda d: _set(d, "variants", {"2xH100": "H100"}),
     "variants.2xH100", ["expected a mapping, got string"]),
    ("variant name with space", lambda d: _set(d, "variants", {"2 x H100": {}}),
     "variants.2 x H100", ["invalid variant name"]),
    ("no variants", lambda d: _delete(d, "variants"),
     "variants", ["missing", "8xH200"]),
    ("ignore_eos string", lambda d: _set(d, "benchmark.ignore_eos", "yes please"),
     "benchmark.ignore_eos", ["true or false"]),
    # unknown keys
    ("top-level typo", lambda d: _set(d, "benchmarks", {}),
     "benchmarks", ["unknown key", "allowed: description, model, backend"]),
    ("benchmark typo", lambda d: _set(d, "benchmark.max_concurency", 3),
     "benchmark.max_concurency", ["unknown key", "max_concurrency"]),
    ("engine typo", lambda d: _set(d, "backend.vllm.tensor_parallel", 2),
     "backend.vllm.tensor_parallel", ["unknown key", "tensor_parallel_size"]),
    ("variant typo", lambda d: _set(d, "variants.2xH100.gpus", 2),
     "variants.2xH100.gpus", ["unknown key", "gpu_count"]),
    # engines and runtime
    ("two engines", lambda d: _set(d, "backend.sglang", {}),
     "backend", ["exactly one engine, got vllm, sglang"]),
    ("unknown engine", lambda d: _set(d, "backend", {"trtllm": {}}),
     "backend.trtllm", ["unknown key", "allowed: vllm, sglang"]),
    ("no backend", lambda d: _delete(d, "backend"),
     "backend", ["missing", "vllm, sglang"]),
    ("bad runtime", lambda d: _set(d, "runtime", "kubernetes"),
     "runtime", ["unknown runtime", "docker-compose, process"]),
    ("context too short", lambda d: _set(d, "backend.vllm.max_model_len", 120),
     "backend.vllm.max_model_len", ["shorter than random_input_len + random_output_len = 150"]),
    # matrices
    ("zipped lengths differ", lambda d: _set(d, "matrices", [
        {"benchmark.max_concurrency": [1, 2, 3], "benchmark.num_prompts": [4, 5]}]),
     "matrices[0]", ["equally long", "benchmark.max_concurrency has 3",
                     "benchmark.num_prompts has 2"]),
    ("matrix typo", lambda d: _set(d, "matrices", [{"benchmark.max_concurency": [1, 2]}]),
     "matrices[0].benchmark.max_concurency", ["unknown key"]),
    ("matrix bad value", lambda d: _set(d, "matrices", [{"benchmark.max_concurrency": [1, 0]}]),
     "matrices[0].benchmark.max_concurrency", ["positive integer, got 0"]),
    ("matrix not a list", lambda d: _set(d, "matrices", {"benchmark.max_concurrency": [1]}),
     "matrices", ["expected a list of mappings"]),
    ("matrix empty list", lambda d: _set(d, "matrices", [{"benchmark.num_prompts": []}]),
     "matrices[0]", ["empty list"]),
    ("matrix sweeps gpu", lambda d: _set(d, "matrices", [{"gpu": ["a", "b"]}]),
     "matrices[0].gpu", ["not a field that can be swept"]),
    ("duplicate sweep points", lambda d: _set(d, "matrices", [
        {"benchmark.max_concurrency": [1, 2]}, {"benchmark.max_concurrency": [2]}]),
     "matrices", ["sweep points 2 and 3 are the same"]),
]


@pytest.mark.parametrize(
    ("change", "field", "fragments"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_bad_recipe_names_file_field_and_expectation(tmp_path, change, field, fragments):
    error, file = _error(tmp_path, change(base()))

    assert error.path == file
    assert error.field == field
    message = str(error)
    assert message.startswith(f"{file}: {field}: ")
    for fragment in fragments:
        assert fragment in message


def test_the_base_recipe_of_these_cases_is_valid(tmp_path):
    recipe = load_recipe(write_recipe(tmp_path, base()).parent)
    assert [task.task_id for task in recipe.tasks] == ["demo/2xH100"]


def test_override_in_a_variant_is_reported_at_the_variant(tmp_path):
    data = base()
    data["variants"]["2xH100"]["benchmark"] = {"num_prompts": -5}
    error, _ = _error(tmp_path, data)
    assert error.field == "variants.2xH100.benchmark.num_prompts"


def test_base_error_says_which_variant_it_broke(tmp_path):
    data = base()
    data["variants"]["4xH100"] = {"gpu": "h100", "gpu_count": 4,
                                  "backend": {"vllm": {"tensor_parallel_size": 3}}}
    error, _ = _error(tmp_path, data)
    assert error.field == "variants.4xH100.gpu_count"
    assert "not a multiple of the 3 GPUs" in str(error)


def test_variant_level_matrix_error_names_the_variant(tmp_path):
    data = base()
    data["variants"]["2xH100"]["matrices"] = [{"benchmark": {"max_concurrency": ["x"]}}]
    error, _ = _error(tmp_path, data)
    assert error.field == "variants.2xH100.matrices[0].benchmark.max_concurrency"
    assert "got string 'x'" in str(error)


@pytest.mark.parametrize(
    ("text", "field", "fragment"),
    [
        ("model: [unclosed\n", "(yaml)", "invalid YAML at line"),
        ("a: b\n  c: d\n", "(yaml)", "invalid YAML at line 2"),
        ("", "(file)", "empty"),
        ("- just\n- a list\n", "(top level)", "expected a mapping, got list"),
        ("just a string", "(top level)", "expected a mapping, got string"),
        ("gpu_count: " + "9" * 5000 + "\n", "(yaml)", "cannot parse"),
        ("a: &a [*a]\n", "(yaml)", "recursive"),
        ("a: &a [x, x, x, x, x, x, x, x, x, x]\n"
         "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
         "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
         "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
         "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n", "(yaml)", "more than"),
        ("1: x\n", "1", "unknown key"),
    ],
    ids=["unclosed", "bad indent", "empty", "list", "scalar", "5000-digit int", "recursive",
         "alias bomb", "int key"],
)
def test_unreadable_yaml_is_a_recipe_error(tmp_path, text, field, fragment):
    file = write_recipe(tmp_path, text)
    with pytest.raises(RecipeError) as caught:
        load_recipe(file)
    assert caught.value.path == str(file)
    assert caught.value.field == field
    assert fragment in str(caught.value)


def test_not_utf8_is_a_recipe_error(tmp_path):
    file = write_recipe(tmp_path, "x")
    file.write_bytes(b"model: \xff\xfe\n")
    with pytest.raises(RecipeError, match="not UTF-8"):
        load_recipe(file)


def test_missing_recipe_folder(tmp_path):
    with pytest.raises(RecipeError) as caught:
        load_recipe(tmp_path / "nope")
    assert caught.value.field == "(file)"
    assert "not found" in str(caught.value)


def test_unknown_variant_lists_the_available_ones(tmp_path):
    data = base()
    data["variants"]["8xH200"] = {"gpu": "h200", "gpu_count": 8}
    file = write_recipe(tmp_path, data)
    with pytest.raises(RecipeError) as caught:
        resolve_variant(file.parent, "8xB200")
    assert caught.value.path == str(file)
    assert caught.value.field == "variants"
    assert "unknown variant '8xB200'" in str(caught.value)
    assert "available: 2xH100, 8xH200" in str(caught.value)


def test_bad_recipe_folder_name(tmp_path):
    file = write_recipe(tmp_path, base(), name="bad name")
    with pytest.raises(RecipeError) as caught:
        load_recipe(file.parent)
    assert caught.value.field == "(recipe name)"


def test_deep_nesting_is_refused(tmp_path):
    data = base()
    nested: list = []
    for _ in range(40):
        nested = [nested]
    data["variants"]["2xH100"]["description"] = nested
    error, _ = _error(tmp_path, data)
    assert error.field == "(yaml)"
    assert "nested more than 32 levels deep" in str(error)


def test_description_must_be_text(tmp_path):
    data = base()
    data["description"] = ["a"]
    error, _ = _error(tmp_path, data)
    assert error.field == "description"
    assert "expected a string, got list" in str(error)


def test_check_recipe_reports_every_bad_variant_and_a_base_error_once(tmp_path):
    data = base()
    data["variants"]["8xH900"] = {"gpu": "H900", "gpu_count": 8}
    data["variants"]["4xH100"] = {"gpu": "h100", "gpu_count": 3}
    file = write_recipe(tmp_path, data)
    errors = check_recipe(file.parent)
    assert [error.field for error in errors] == [
        "variants.8xH900.gpu", "variants.4xH100.gpu_count",
    ]
    data["model"]["name"] = "no-org"  # breaks every variant: reported once
    errors = check_recipe(write_recipe(tmp_path, data).parent)
    assert [error.field for error in errors] == ["model.name"]
    assert all(error.path == str(file) for error in errors)
    assert check_recipe(write_recipe(tmp_path, base(), name="good").parent) == []
