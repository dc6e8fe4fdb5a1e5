// Package sim replays CPU-utilisation traces through placement policies on a
// model of a data centre and scores them the way the consolidation
// literature does: migrations, SLATAH, PDM, SLAV, energy and ESV.
//
// The model follows CloudSim 3.0.3's power package (hosts, time-shared VM
// scheduling with over-subscription, migration cost and SLA accounting), so
// that Beloglazov and Buyya's published figures on the PlanetLab traces can
// be reproduced before other policies are compared on the same footing.
package sim
