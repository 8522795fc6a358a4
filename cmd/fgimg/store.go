package main

import (
	"fmt"
	"io"
	"os"

	"github.com/fgimg/fgimg/cache"
	"github.com/fgimg/fgimg/planner"
)

// cacheDir is --cache-dir, else the default location.
func cacheDir(flag string) (string, error) {
	if flag != "" {
		return flag, nil
	}
	return cache.DefaultDir()
}

// openCache opens the cache; with create false a missing cache is not
// created and (nil, nil) is returned, so that plan never writes. What
// opening changed (a cache open to other users made private) is told on
// errw.
func openCache(flag string, create bool, errw io.Writer) (*cache.Store, error) {
	dir, err := cacheDir(flag)
	if err != nil {
		return nil, err
	}
	if !create {
		if _, err := os.Stat(dir); os.IsNotExist(err) {
			return nil, nil
		}
	}
	s, err := cache.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("opening the cache: %w", err)
	}
	for _, n := range s.Notices() {
		fmt.Fprintf(errw, "fgimg: %s\n", n)
	}
	return s, nil
}

// useCache makes the planner ask store about cached stages and remember
// source file digests in it; the returned function saves the memo. A nil
// store (plan without a cache) changes nothing.
func (c *configFlags) useCache(store *cache.Store) (save func()) {
	if store == nil {
		return func() {}
	}
	memo := store.FileHashes()
	c.store, c.memo = store, memo
	return func() { memo.Save() }
}

// planWithCache opens (creating) the cache and plans paths against it,
// for a command that writes to the cache without building (register,
// push, pull). Errors are told on errw; on success done closes the cache
// and saves the file digests, and on failure plan is nil.
func (c *configFlags) planWithCache(paths []string, errw io.Writer) (store *cache.Store, plan *planner.Plan, done func()) {
	store, err := openCache(c.cacheDir, true, errw)
	if err != nil {
		fmt.Fprintf(errw, "fgimg: %s\n", err)
		return nil, nil, nil
	}
	save := c.useCache(store)
	done = func() {
		save()
		store.Close()
	}
	if _, plan = c.load(paths, errw); plan == nil {
		done()
		return nil, nil, nil
	}
	return store, plan, done
}

// readCache opens the cache, if there is one, for a command that plans
// against it without building (plan, diff), and makes the planner use
// it; done closes it. A missing cache is not created: store is nil.
func (c *configFlags) readCache(errw io.Writer) (store *cache.Store, done func(), err error) {
	store, err = openCache(c.cacheDir, false, errw)
	if err != nil {
		return nil, nil, err
	}
	save := c.useCache(store)
	return store, func() {
		save()
		if store != nil {
			store.Close()
		}
	}, nil
}
