"""Constants shared by the synthetic-world modules: versions, limits, class ids, primitive kinds."""

from __future__ import annotations

#: Bump when the output for a given seed changes (stored in dataset.json). 2.0 added the "full"
#: domain randomisation; ``randomization="basic"`` still renders exactly what 1.0 rendered. 2.1 added
#: vehicles ahead in the ego lane (``Look.lead_gap``) to the "full" stream. 2.2 (``"full"`` only): truck
#: cargo boxes in real liveries (dark and bright paint, ribs, curtains, printed lettering and graphics)
#: and grass with blade texture, mowing stripes and dry patches. 2.3 (``"full"`` only): grass verges
#: carved out of the sidewalk band (``Look.verge_width``) and bright balcony-slab facades. 2.4 (``"full"``
#: only): leafless trees showing the sky between their branches (``Look.bare_trees``) and direction /
#: information boards (``Look.board_spacing``). 2.5 (``"full"`` only): rarer, narrower verge strips and
#: half the wide verges behind the sidewalk (2.3 had cut the rendered sidewalk from 3.8 % to 2.3 %).
#: 2.6 (``"full"`` only): hedges and garden fences along the building line (``Look.garden_edge``) and
#: triangle / disc traffic signs (``Look.sign_spacing``), both placed after every other object. 2.7
#: (``"full"`` only): car glass mirrors the sky with dark tree and facade shapes (``Look.glass_reflect``).
#: 2.8 (``"full"`` only): cyclists (rider and bicycle) and parked bicycles (``Look.cyclist_spacing``,
#: ``Look.bike_rack_spacing``), placed after every other object. (``Look.articulated_people``, pedestrians
#: with legs in a stride, arms, coats and bags, was tried as 2.9 and is off: docs/sim2real.md, section 26.)
#: 2.10 (``"full"`` only): a truck's underbody as real ones show it (``Look.truck_underbody``): the cargo
#: box rides 1.0-1.3 m up on a chassis with tyres, rims, an underride bar, rear lamps and a number plate
#: (2.8 drew a plain black slab under a box 0.6 m up, and the network called a real truck's rear car).
#: 2.11 (``"full"`` only): bins, utility cabinets, planters, entrance pillars and bollards at the building
#: line (``Look.frontage_clutter``), placed after every other object: before them only people stood there.
#: (``Look.cloth_texture``, creases, stripes, checks and prints on people's clothes, was tried as 2.12 and
#: is off: docs/sim2real.md, section 37.) 2.13 (``"full"`` only): loads on a share of the car roofs
#: (``Look.roof_load``): roof boxes, crossbars with luggage, AV sensor rigs, taxi signs, placed after
#: every other object. (``Look.leafy_crowns``, foliage as lit clumps of leaves with dark crevices, a leaf
#: grain and gaps at a crown's rim, was tried as 2.14, and with branch masses (``Look.crown_masses``) as
#: 2.15; ``Look.near_foliage``, bushes and small low-crowned trees at the kerb, along the building line
#: and between the buildings, as 2.16; all three are off: docs/sim2real.md, sections 45, 46 and 48.)
#: (``Look.crown_clearance``, street-tree crowns lifted ``CARRIAGEWAY_CLEARANCE`` clear of the carriageway, no
#: value drawn changed, was tried as 2.17 and is off for training: docs/sim2real.md, section 71. The rendered
#: test set SYN8000 of section 70 is rendered with it: ``synth --look crown_clearance=true``.)
GENERATOR_VERSION = "2.13"
#: metres of clear height over the carriageway under street-tree crowns: real street trees are pruned to
#: it (4.5 m: Germany's RASt 06 / ZTV-Baumpflege; 14 ft, 4.3 m, in the US; 5.2 m in the UK)
CARRIAGEWAY_CLEARANCE = 4.5
#: ``"full"``: domain-randomised appearance and camera (default, for sim-to-real transfer);
#: ``"basic"``: the generator-1.0 distribution (narrow asphalt/camera ranges), kept for ablations.
RANDOMIZATIONS = ("full", "basic")
#: Far limit of valid depth in metres (fits the uint16 KITTI encoding, max 255.99 m).
MAX_DEPTH = 200.0
_NEAR = 0.05

# Cityscapes train ids used here.
ROAD, SIDEWALK, BUILDING, WALL, FENCE, POLE, TLIGHT, TSIGN = 0, 1, 2, 3, 4, 5, 6, 7
VEGETATION, TERRAIN, SKY, PERSON, RIDER, CAR, TRUCK, BUS = 8, 9, 10, 11, 12, 13, 14, 15
BICYCLE = 18

# Primitive kinds.
_BOX, _CYL, _ELL = 0, 1, 2
# Texture ids (how the deferred shader decorates a primitive).
(
    _T_PLAIN,
    _T_FACADE,
    _T_CARBODY,
    _T_GLASS,
    _T_FOLIAGE,
    _T_TLIGHT,
    _T_SIGN,
    _T_FENCE,
    _T_BUS,
    _T_TRUCKCAB,
    _T_HEAD,
    _T_CONCRETE,
    _T_CARGO,
    _T_CHASSIS,
) = range(14)
