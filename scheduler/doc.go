// Package scheduler will turn placement hints and host usage into migration
// plans: hotspot detection, VMs that must move together, host policies, and
// dry-run or libvirt execution. It is empty until the placement issue is
// taken.
package scheduler
