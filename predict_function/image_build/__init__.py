"""Build-time helpers run by the Dockerfile's build stages; none of this is in the final image."""
