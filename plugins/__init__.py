"""Built-in filters. Each module is a plugin, registered through the ``ggtqc`` entry-point
group exactly as a third-party plugin is (see ``[project.entry-points.ggtqc]``)."""
