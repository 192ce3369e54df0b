"""The launchpad jobs: deploy (dry run), teardown (dry run), and VM create/delete over the
fake clouds, each run as Dagster runs them, with typed config."""

import pytest
from dagster import DagsterRunStatus, instance_for_test

from deplodock_dagster.orchestration import action_jobs
from deplodock_dagster.orchestration import settings as orch_settings
from deplodock_dagster.orchestration.definitions import build_resources

REPO_RECIPES = __import__("pathlib").Path(__file__).resolve().parent.parent / "recipes"


def _logs(instance, result) -> str:
    return "\n".join(entry.user_message or "" for entry in instance.all_logs(result.run_id))


def test_deploy_local_dry_run_records_the_engine_command_and_runs_nothing(tmp_path,
                                                                         monkeypatch):
    monkeypatch.setenv("DEPLODOCK_DEPLOY_DIR", str(tmp_path / "deploy"))
    with instance_for_test() as instance:
        result = action_jobs.deploy_local_job.execute_in_process(
            run_config={"ops": {"deploy_local": {"config": {
                "recipe": "tiny-cpu", "variant": "cpu", "dry_run": True, "port": 8123}}}},
            resources=build_resources(recipes_dir=str(REPO_RECIPES)),
            instance=instance,
        )
        assert result.success
        logs = _logs(instance, result)
    assert "vllm.entrypoints.openai.api_server" in logs
    assert "deplodock/tiny-llama" in logs and "8123" in logs
    assert not (tmp_path / "deploy").exists()  # nothing was written on this machine
    metadata = result.output_for_node("deploy_local")
    assert metadata["runtime"] == "process"


def test_deploy_with_an_unknown_variant_fails_naming_the_recipe_and_variants():
    with instance_for_test() as instance:
        result = action_jobs.deploy_local_job.execute_in_process(
            run_config={"ops": {"deploy_local": {"config": {
                "recipe": "tiny-cpu", "variant": "8xNOPE", "dry_run": True}}}},
            resources=build_resources(recipes_dir=str(REPO_RECIPES)),
            instance=instance, raise_on_error=False,
        )
    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data.error.message
    assert "tiny-cpu" in failure and "8xNOPE" in failure


def test_teardown_ssh_dry_run_names_the_host(tmp_path):
    with instance_for_test() as instance:
        result = action_jobs.teardown_job.execute_in_process(
            run_config={"ops": {"teardown_deploy": {"config": {
                "recipe": "tiny-cpu", "variant": "cpu", "dry_run": True,
                "address": "203.0.113.7", "username": "ubuntu"}}}},
            resources=build_resources(recipes_dir=str(REPO_RECIPES)),
            instance=instance,
        )
        assert result.success
        assert "dry run, nothing was run" in _logs(instance, result)


@pytest.mark.sshd
def test_vm_create_job_keeps_its_vm_and_vm_delete_job_deletes_it(cloud_env, monkeypatch,
                                                                 fake_gce):
    from deplodock_dagster.orchestration.resources import CloudResource
    from deplodock_dagster.orchestration.vm_cleanup import reconcile_vms

    for name, value in cloud_env.items():
        monkeypatch.setenv(name, value)
    resources = build_resources()
    with instance_for_test() as instance:
        created = action_jobs.vm_create_job.execute_in_process(
            run_config={"ops": {"create_vm": {"config": {"gpu": "H100", "gpu_count": 1}}}},
            resources=resources, instance=instance,
        )
        assert created.success
        vm = created.output_for_node("create_vm")
        assert [i["name"] for i in fake_gce.live_instances()] == [vm["name"]]
        run = instance.get_run_by_id(created.run_id)
        assert run.status == DagsterRunStatus.SUCCESS
        assert run.tags[orch_settings.KEEP_VMS_TAG] == "true"

        # Reconciliation leaves a VM that was made to stay.
        report = reconcile_vms(instance, CloudResource().settings())
        assert report.kept == [vm["name"]] and report.deleted == []

        dry = action_jobs.vm_delete_job.execute_in_process(
            run_config={"ops": {"delete_named_vm": {"config": {
                "vm": vm["name"], "dry_run": True}}}},
            resources=resources, instance=instance,
        )
        assert dry.success and len(fake_gce.live_instances()) == 1
        deleted = action_jobs.vm_delete_job.execute_in_process(
            run_config={"ops": {"delete_named_vm": {"config": {"vm": vm["name"]}}}},
            resources=resources, instance=instance,
        )
        assert deleted.success
        assert fake_gce.live_instances() == []

        missing = action_jobs.vm_delete_job.execute_in_process(
            run_config={"ops": {"delete_named_vm": {"config": {"vm": "no-such-vm"}}}},
            resources=resources, instance=instance, raise_on_error=False,
        )
        assert not missing.success
        message = missing.get_step_failure_events()[0].step_failure_data.error.message
        assert "no-such-vm" in message
