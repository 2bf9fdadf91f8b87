"""Tour sections; each module registers its sections with `genshop.tour.section`."""
