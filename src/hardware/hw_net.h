/* hw_net: network counters (telemetry.metrics network.*) and the node's
 * private address (node.register ipAddress).
 *
 * Counters: bytes and packets received/sent since boot, summed over every
 * interface of <root>/proc/net/dev except loopback ("lo"). Virtual
 * interfaces (docker0, veth*, bridges, tunnels) are included, as the issue
 * asks: they carry the deployments' traffic. The kernel counts a packet once
 * per interface it crosses, so container traffic appears on its veth, on the
 * bridge and on the uplink; the sum is "bytes moved by this host's
 * interfaces", not "bytes that crossed the wire".
 *
 * Private address: the IPv4 address of the interface that holds the default
 * route with the lowest metric in <root>/proc/net/route (ties: the first
 * listed), not merely the first interface; else the first non-loopback,
 * non-link-local IPv4 of an interface that is up; else "127.0.0.1". */
#pragma once

#include <stddef.h>
#include <stdint.h>

struct ifaddrs;

typedef struct hw_net_counters {
        uint64_t rx_bytes, tx_bytes, rx_packets, tx_packets; /* saturate at UINT64_MAX */
        unsigned interfaces; /* interfaces summed (loopback not counted) */
} hw_net_counters;

/* Pure parser of /proc/net/dev ("name: rx_bytes rx_packets errs drop fifo
 * frame compressed multicast tx_bytes tx_packets ..."). Lines without a
 * colon (the two headers) and malformed lines are skipped. Returns 0, or
 * -EBADMSG when no interface line was found at all. */
int hw_net_parse_dev(const char *text, size_t len, hw_net_counters *ret);
/* Reads <root_fd>/proc/net/dev (any size up to 4 MiB). Returns 0 or a
 * negative errno. */
int hw_net_read_at(int root_fd, hw_net_counters *ret);

/* Pure parser of /proc/net/route: writes the interface of the up
 * (RTF_UP) route with destination and mask 0 and the lowest metric to ifname
 * (NUL-terminated, size >= 1). Returns 0, or -ENOENT when there is none. */
int hw_net_parse_default_route(const char *text, size_t len, char *ifname, size_t size);

/* Picks an address from a getifaddrs() list: with ifname non-NULL/non-empty,
 * the first IPv4 of that interface (alias labels "eth0:1" included) that is
 * not link-local (169.254/16); with ifname NULL or "" (or nothing found on
 * it), the first IPv4 of an up, non-loopback interface that is neither
 * loopback nor link-local. Writes dotted quad to out (size >= 16). Returns 0
 * or -ENOENT (out untouched). */
int hw_net_pick_ipv4(const struct ifaddrs *list, const char *ifname, char *out, size_t size);

/* Writes the private IPv4 address (see above) to out (size >= 16); always
 * writes something ("127.0.0.1" at worst). Returns 0 when an address was
 * found, -ENOENT for the "127.0.0.1" fallback, or another negative errno
 * (getifaddrs failed; out holds "127.0.0.1"). */
int hw_net_private_ip(int root_fd, char *out, size_t size);
