"""Audits from a step log alone: `replay --verify`, re-deciding under another margin or rule,
and red-flag what-ifs."""
