"""Bundled recipes. The YAML files here ship inside the package as `augment.pipelines`."""
