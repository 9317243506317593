"""Lead management: the lead model (``leads.yaml``), the lead engine that keeps scores, stages and
segment memberships from the event stream, and routing to sales."""

from leadflow.leads.model import LeadModel, LeadModelError, load_lead_model, parse_lead_model

__all__ = ["LeadModel", "LeadModelError", "load_lead_model", "parse_lead_model"]
