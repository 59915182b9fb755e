"""A plugin whose import fails, as one with a missing dependency would."""

import a_package_that_is_not_installed  # noqa: F401
