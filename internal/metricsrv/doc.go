// Package metricsrv serves a Prometheus registry on /metrics and a health
// check on /healthz for the relay and the collector, on an address of
// their own so that scraping needs none of the dashboard's logins.
package metricsrv
