"""Compliance: rules as versioned configuration, and the pure functions that apply them.

Nothing else in suanli decides compliance: the API, the fleet importer and (later) the
scheduler all call :func:`suanli.policy.evaluate.evaluate_placement` and
:func:`suanli.policy.evaluate.check_fleet_change`.
"""
