"""Taskology-TF: separate task networks trained collectively through consistency losses."""
