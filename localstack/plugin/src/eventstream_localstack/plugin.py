"""plux registration of the process executor.

LocalStack resolves ``LAMBDA_RUNTIME_EXECUTOR=eventstream-process`` through the entry point declared in
pyproject.toml. The executor module is imported only in ``load()`` so that merely listing plugins costs nothing.
"""

from localstack.services.lambda_.invocation.plugins import RuntimeExecutorPlugin


class ProcessRuntimeExecutorPlugin(RuntimeExecutorPlugin):
    name = "eventstream-process"

    def load(self, *args, **kwargs):
        from eventstream_localstack.executor import ProcessRuntimeExecutor

        return ProcessRuntimeExecutor
