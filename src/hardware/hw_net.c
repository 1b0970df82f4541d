#include "hardware/hw_net.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <net/if.h>
#include <netinet/in.h>
#include <string.h>

#include "core/util.h"
#include "hardware/hw_proc.h"

int hw_net_parse_dev(const char *text, size_t len, hw_net_counters *ret) {
        const char *p = text, *end = text + len;
        hw_net_counters c = { 0 };
        bool any_line = false;

        while (p < end) {
                const char *eol = hw_proc_eol(p, end), *colon = memchr(p, ':', (size_t)(eol - p));
                const char *name, *q;
                uint64_t f[10];
                size_t nlen;
                int i;

                if (!colon)
                        goto next;
                name = hw_proc_skip_blank(p, colon);
                nlen = (size_t)(colon - name);
                q = colon + 1;
                /* rx: bytes packets errs drop fifo frame compressed multicast; tx: bytes packets */
                for (i = 0; i < 10; i++) {
                        q = hw_proc_skip_blank(q, eol);
                        if (!hw_proc_scan_u64(&q, eol, &f[i]))
                                break;
                }
                if (i < 10)
                        goto next;
                any_line = true;
                if (nlen == 2 && memcmp(name, "lo", 2) == 0)
                        goto next;
                c.rx_bytes += f[0];
                c.rx_packets += f[1];
                c.tx_bytes += f[8];
                c.tx_packets += f[9];
                c.interfaces++;
        next:
                p = eol < end ? eol + 1 : end;
        }
        if (!any_line)
                return -EBADMSG;
        *ret = c;
        return 0;
}

int hw_net_read_at(int root_fd, hw_net_counters *ret) {
        char buf[8192];
        hw_proc_text t;
        int r = hw_proc_read(root_fd, "proc/net/dev", buf, sizeof buf, 1 << 20, &t);

        if (r < 0)
                return r;
        r = hw_net_parse_dev(t.data, t.len, ret);
        hw_proc_text_done(&t);
        return r;
}

int hw_net_parse_default_route(const char *text, size_t len, char *ifname, size_t size) {
        const char *p = text, *end = text + len;
        uint64_t best = UINT64_MAX;
        bool found = false;

        p = hw_proc_eol(p, end); /* header */
        p = p < end ? p + 1 : end;
        while (p < end) {
                const char *eol = hw_proc_eol(p, end), *q, *name;
                uint64_t dest, gw, flags, refcnt, use, metric, mask;
                size_t nlen;

                name = hw_proc_skip_blank(p, eol);
                q = name;
                while (q < eol && *q != '\t' && *q != ' ')
                        q++;
                nlen = (size_t)(q - name);
                q = hw_proc_skip_blank(q, eol);
                if (nlen == 0 || nlen >= IFNAMSIZ || !hw_proc_scan_hex(&q, eol, &dest))
                        goto next;
                q = hw_proc_skip_blank(q, eol);
                if (!hw_proc_scan_hex(&q, eol, &gw))
                        goto next;
                q = hw_proc_skip_blank(q, eol);
                if (!hw_proc_scan_hex(&q, eol, &flags))
                        goto next;
                q = hw_proc_skip_blank(q, eol);
                if (!hw_proc_scan_u64(&q, eol, &refcnt))
                        goto next;
                q = hw_proc_skip_blank(q, eol);
                if (!hw_proc_scan_u64(&q, eol, &use))
                        goto next;
                q = hw_proc_skip_blank(q, eol);
                if (!hw_proc_scan_u64(&q, eol, &metric))
                        goto next;
                q = hw_proc_skip_blank(q, eol);
                if (!hw_proc_scan_hex(&q, eol, &mask))
                        goto next;
                /* RTF_UP (0x1), destination and mask 0: a default route. */
                if (dest == 0 && mask == 0 && (flags & 1) && metric < best) {
                        best = metric;
                        hw_proc_copy_text(ifname, size, name, nlen);
                        found = true;
                }
        next:
                p = eol < end ? eol + 1 : end;
        }
        return found ? 0 : -ENOENT;
}

static bool usable_v4(const struct sockaddr_in *sin) {
        uint32_t a = ntohl(sin->sin_addr.s_addr);
        return (a >> 24) != 127 && (a >> 16) != 0xa9fe && a != 0; /* not loopback, not 169.254/16 */
}

int hw_net_private_ip(int root_fd, char *out, size_t size) {
        char ifname[IFNAMSIZ] = "", buf[4096];
        struct ifaddrs *ifa = NULL, *i;
        hw_proc_text t;
        int r = -ENOENT;

        if (hw_proc_read(root_fd, "proc/net/route", buf, sizeof buf, 1 << 20, &t) == 0) {
                if (hw_net_parse_default_route(t.data, t.len, ifname, sizeof ifname) < 0)
                        ifname[0] = '\0';
                hw_proc_text_done(&t);
        }
        util_strlcpy(out, "127.0.0.1", size);
        if (getifaddrs(&ifa) < 0)
                return -errno;
        /* Pass 1: the default-route interface; pass 2: any usable IPv4. */
        for (int pass = ifname[0] ? 1 : 2; pass <= 2 && r < 0; pass++) {
                for (i = ifa; i; i = i->ifa_next) {
                        if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET || (i->ifa_flags & IFF_LOOPBACK))
                                continue;
                        if (pass == 1 && strcmp(i->ifa_name, ifname) != 0)
                                continue;
                        if (!usable_v4((const struct sockaddr_in *)i->ifa_addr))
                                continue;
                        if (inet_ntop(AF_INET, &((const struct sockaddr_in *)i->ifa_addr)->sin_addr, out,
                                      (socklen_t)size))
                                r = 0;
                        break;
                }
        }
        freeifaddrs(ifa);
        return r;
}
