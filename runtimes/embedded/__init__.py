"""The embedded runtime an app imports (through `runtimes`): backends, the loader, tokenisation and
one pipeline per task. Torch-free; serving builds on it, never the reverse."""
