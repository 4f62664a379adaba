"""Task pipelines, one per task, looked up by the artifact's task."""

from runtimes.common.manifest import Manifest, Task
from runtimes.embedded.pipelines.base import Pipeline
from runtimes.embedded.pipelines.question_answering import QuestionAnsweringPipeline
from runtimes.embedded.pipelines.text_classification import TextClassificationPipeline
from runtimes.embedded.pipelines.token_classification import TokenClassificationPipeline

PIPELINES: dict[Task, type[Pipeline]] = {
    p.task: p for p in (TextClassificationPipeline, TokenClassificationPipeline, QuestionAnsweringPipeline)
}



def validated(manifest: Manifest) -> Manifest:
    """`manifest`, checked against the schema (`Manifest.validate`) and against its task's pipeline."""
    manifest.validate()
    PIPELINES[manifest.task].check_manifest(manifest)
    return manifest


__all__ = [
    "PIPELINES",
    "Pipeline",
    "QuestionAnsweringPipeline",
    "TextClassificationPipeline",
    "TokenClassificationPipeline",
    "validated",
]
