/* mkman: writes a man page from its template (scripts/man/NAME.in) at build time, so the
 * pages cannot drift from the code:
 *
 *   mkman TEMPLATE OUT VERSION DATE [PROGRAM]
 *
 * Template lines are copied, with @VERSION@ and @DATE@ replaced, except three directives
 * that stand alone on their line:
 *   @KEYS global|domain|group|relay@  the configuration keys of that section, from the key
 *                                     table in lib/cfg.c (cfg_reference_man), as README's
 *                                     reference table is (relayd --config-reference);
 *   @OPTIONS@                         PROGRAM's options, from its own --help text;
 *   @COMMANDS@                        PROGRAM's commands (the "commands:" part of --help).
 * Whatever the program says about an option or command is what the page says. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cfg.h"

/* Writes s to out with roff's specials escaped ('-' as \-, backslash as \e, a leading dot
 * or quote made harmless). With metavars, runs of two or more capitals are set in italics
 * and the rest in bold (the option or command itself). */
static void roff(FILE *out, const char *s, bool metavars)
{
    bool line_start = true;
    bool in_italic = false;
    if (metavars)
        fputs("\\fB", out);
    for (const char *p = s; *p; p++) {
        if (metavars) {
            bool cap = (*p >= 'A' && *p <= 'Z') &&
                       ((p[1] >= 'A' && p[1] <= 'Z') || (p > s && p[-1] >= 'A' && p[-1] <= 'Z'));
            if (cap && !in_italic) {
                fputs("\\fI", out);
                in_italic = true;
            } else if (!cap && in_italic) {
                fputs("\\fB", out);
                in_italic = false;
            }
        }
        if (*p == '\\')
            fputs("\\e", out);
        else if (*p == '-')
            fputs("\\-", out);
        else if ((*p == '.' || *p == '\'') && line_start)
            fprintf(out, "\\&%c", *p);
        else
            fputc(*p, out);
        line_start = *p == '\n';
    }
    if (metavars)
        fputs("\\fR", out);
}

static char *trim(char *s)
{
    while (*s == ' ')
        s++;
    size_t n = strlen(s);
    while (n && (s[n - 1] == '\n' || s[n - 1] == ' ' || s[n - 1] == '\r'))
        s[--n] = '\0';
    return s;
}

static size_t indent(const char *s)
{
    size_t n = 0;
    while (s[n] == ' ')
        n++;
    return n;
}

/* One entry of --help: the spec ("-c, --config FILE", "flush DOMAIN|--all") and its text. */
struct entry {
    char spec[256];
    char text[2048];
};

/* Reads PROGRAM --help and collects either its options (lines indented 2 to 6 spaces that
 * start with '-') or, after a "commands:" line, its commands (2 spaces, then a word; the
 * text on the next, deeper lines). Continuation lines (deeper indent) join the text. */
static int help_entries(const char *prog, bool commands, struct entry *v, size_t cap, size_t *n)
{
    char cmd[4200];
    snprintf(cmd, sizeof(cmd), "'%s' --help", prog);
    FILE *p = popen(cmd, "r");
    if (!p)
        return -errno;
    char line[1024];
    bool in_commands = false;
    struct entry *cur = NULL;
    *n = 0;
    while (fgets(line, sizeof(line), p)) {
        size_t ind = indent(line);
        char *t = trim(line);
        if (strcmp(t, "commands:") == 0 && ind == 0) {
            in_commands = true;
            cur = NULL;
            continue;
        }
        if (!*t || ind == 0) {
            if (ind == 0 && *t)
                in_commands = false; /* a paragraph at the margin ends a list */
            cur = NULL;
            continue;
        }
        bool starts = commands ? (in_commands && ind == 2)
                               : (!in_commands && ind >= 2 && ind <= 6 && t[0] == '-');
        if (starts) {
            if (*n == cap)
                break;
            cur = &v[(*n)++];
            memset(cur, 0, sizeof(*cur));
            /* The spec ends at the first run of two spaces (options); a command line is all
             * spec, its text follows on deeper lines. */
            char *gap = commands ? NULL : strstr(t, "  ");
            if (gap) {
                *gap = '\0';
                snprintf(cur->text, sizeof(cur->text), "%s", trim(gap + 2));
            }
            snprintf(cur->spec, sizeof(cur->spec), "%s", t);
            continue;
        }
        if (cur && ((commands && in_commands) || (!commands && !in_commands))) {
            size_t l = strlen(cur->text);
            snprintf(cur->text + l, sizeof(cur->text) - l, "%s%s", l ? "\n" : "", t);
        }
    }
    int st = pclose(p);
    if (st != 0) {
        fprintf(stderr, "mkman: %s --help exited with status %d\n", prog, st);
        return -EIO;
    }
    return 0;
}

static int write_entries(FILE *out, const char *prog, bool commands)
{
    static struct entry v[64];
    size_t n = 0;
    int rc = help_entries(prog, commands, v, 64, &n);
    if (rc < 0)
        return rc;
    if (n == 0) {
        fprintf(stderr, "mkman: no %s found in %s --help\n", commands ? "commands" : "options",
                prog);
        return -EINVAL;
    }
    for (size_t i = 0; i < n; i++) {
        fputs(".TP\n", out);
        roff(out, v[i].spec, true);
        fputc('\n', out);
        /* Continuation lines join the paragraph, except the items of a list (a line that
         * starts with a digit, as fetchd's exit codes), which keep their own lines. */
        for (char *s = v[i].text, *nl; s && *s; s = nl ? nl + 1 : NULL) {
            nl = strchr(s, '\n');
            if (nl)
                *nl = '\0';
            roff(out, s, false);
            fputs(nl && nl[1] >= '0' && nl[1] <= '9' ? "\n.br\n" : "\n", out);
        }
    }
    return 0;
}

static int write_keys(FILE *out, const char *section)
{
    static const char *const names[] = {"global", "domain", "group", "relay"};
    for (int s = 0; s < 4; s++) {
        if (strcmp(section, names[s]) != 0)
            continue;
        static char buf[1 << 17];
        int n = cfg_reference_man((enum cfg_section)s, buf, sizeof(buf));
        if (n < 0)
            return n;
        fwrite(buf, 1, (size_t)n, out);
        return 0;
    }
    fprintf(stderr, "mkman: unknown key section '%s'\n", section);
    return -EINVAL;
}

/* Copies line to out with @VERSION@ and @DATE@ replaced. */
static void subst(FILE *out, const char *line, const char *version, const char *date)
{
    for (const char *p = line; *p;) {
        if (strncmp(p, "@VERSION@", 9) == 0) {
            fputs(version, out);
            p += 9;
        } else if (strncmp(p, "@DATE@", 6) == 0) {
            fputs(date, out);
            p += 6;
        } else {
            fputc(*p++, out);
        }
    }
}

int main(int argc, char **argv)
{
    if (argc < 5 || argc > 6) {
        fprintf(stderr, "usage: mkman TEMPLATE OUT VERSION DATE [PROGRAM]\n");
        return 2;
    }
    const char *prog = argc == 6 ? argv[5] : NULL;
    FILE *in = fopen(argv[1], "r");
    if (!in) {
        fprintf(stderr, "mkman: %s: %s\n", argv[1], strerror(errno));
        return 1;
    }
    char tmp[4096];
    snprintf(tmp, sizeof(tmp), "%s.tmp", argv[2]);
    FILE *out = fopen(tmp, "w");
    if (!out) {
        fprintf(stderr, "mkman: %s: %s\n", tmp, strerror(errno));
        fclose(in);
        return 1;
    }
    char line[4096];
    int rc = 0, lineno = 0;
    while (rc == 0 && fgets(line, sizeof(line), in)) {
        lineno++;
        char sec[32];
        if (sscanf(line, "@KEYS %31[a-z]@", sec) == 1) {
            rc = write_keys(out, sec);
        } else if (strcmp(line, "@OPTIONS@\n") == 0 || strcmp(line, "@COMMANDS@\n") == 0) {
            if (!prog) {
                fprintf(stderr, "mkman: %s:%d: %s needs PROGRAM\n", argv[1], lineno, trim(line));
                rc = -EINVAL;
            } else {
                rc = write_entries(out, prog, line[1] == 'C');
            }
        } else {
            subst(out, line, argv[3], argv[4]);
        }
    }
    fclose(in);
    if (fclose(out) != 0 && rc == 0)
        rc = -EIO;
    if (rc == 0 && rename(tmp, argv[2]) != 0)
        rc = -errno;
    if (rc != 0) {
        unlink(tmp);
        fprintf(stderr, "mkman: %s not written\n", argv[2]);
        return 1;
    }
    return 0;
}
