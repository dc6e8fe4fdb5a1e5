// Command guestdiag-pkg builds guestdiag's packages from binaries already
// built into -bin (as <goos>_<goarch>/<name>): deb and rpm for the agent, the
// relay and the control plane, and the Windows agent's MSI. It is the build
// tool behind `make packages`; no package ships it.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/guestdiag/guestdiag/internal/pkgbuild"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "guestdiag-pkg:", err)
		os.Exit(1)
	}
}

func run() error {
	describe := flag.String("describe", "", "`git describe --tags --always --dirty` output to take the version from (default: run it)")
	bin := flag.String("bin", "bin", "`dir`ectory with the built binaries as <goos>_<goarch>/<name>")
	packaging := flag.String("packaging", "packaging", "the repository's packaging `dir`ectory")
	out := flag.String("out", "dist", "`dir`ectory to write the packages into")
	arches := flag.String("arch", "amd64,arm64", "comma-separated GOARCH `list` of the Linux packages")
	only := flag.String("packages", "", "comma-separated `names` of the Linux packages to build (default all)")
	formats := flag.String("formats", strings.Join(pkgbuild.Formats, ","), "comma-separated Linux package `formats`")
	msi := flag.Bool("msi", true, "build the Windows agent's MSI too (needs wixl and msibuild)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	version, mtime, err := gitVersion(ctx, *describe)
	if err != nil {
		return err
	}
	if *only != "" {
		for _, n := range strings.Split(*only, ",") {
			if _, ok := pkgbuild.ByName(n); !ok {
				return fmt.Errorf("-packages: no package is named %q", n)
			}
		}
	}
	in := pkgbuild.Inputs{Packaging: *packaging, Bin: *bin, Version: version, MTime: mtime}
	for _, arch := range strings.Split(*arches, ",") {
		for _, p := range pkgbuild.Packages() {
			if *only != "" && !slices.Contains(strings.Split(*only, ","), p.Name) {
				continue
			}
			for _, format := range strings.Split(*formats, ",") {
				name, err := pkgbuild.Build(p, in, format, arch, *out)
				if err != nil {
					return err
				}
				fmt.Println(name)
			}
		}
	}
	if *msi {
		name, err := pkgbuild.BuildMSI(ctx, in, *out)
		if err != nil {
			return err
		}
		fmt.Println(name)
	}
	return nil
}

// gitVersion maps git describe to a package version and takes the last
// commit's time as the files' time, so two builds of one commit match.
func gitVersion(ctx context.Context, describe string) (string, time.Time, error) {
	git := func(args ...string) (string, error) {
		b, err := exec.CommandContext(ctx, "git", args...).Output()
		if err != nil {
			return "", fmt.Errorf("git %s: %w", strings.Join(args, " "), err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	var err error
	if describe == "" {
		if describe, err = git("describe", "--tags", "--always", "--dirty"); err != nil {
			return "", time.Time{}, err
		}
	}
	count, err := git("rev-list", "--count", "HEAD")
	if err != nil {
		return "", time.Time{}, err
	}
	commits, err := strconv.Atoi(count)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("git rev-list --count: %w", err)
	}
	version, err := pkgbuild.Version(describe, commits)
	if err != nil {
		return "", time.Time{}, err
	}
	ct, err := git("log", "-1", "--format=%ct")
	if err != nil {
		return "", time.Time{}, err
	}
	sec, err := strconv.ParseInt(ct, 10, 64)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("git log: %w", err)
	}
	return version, time.Unix(sec, 0).UTC(), nil
}
