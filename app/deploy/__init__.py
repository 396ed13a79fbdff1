"""Deploy files rendered from one source (cluster/profiles.yaml): Serve configs, KubeRay, Ray launcher."""
