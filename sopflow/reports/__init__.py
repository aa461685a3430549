"""Pure figures derived from the read model: funnels, acquisition cost and ROI."""
