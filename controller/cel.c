/* A sandboxed CEL subset: a lexer, a depth-bounded recursive-descent parser building an AST in
 * one array, and a tree-walking evaluator over jansson values that charges a cost for every
 * step and checks the clock every CHECK_EVERY steps. See cel.h and docs/conditions.md. */
#include "cel.h"
#include "utf8.h"
#include "util.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEFAULT_DEPTH 32
#define DEFAULT_COST 10000
#define DEFAULT_TIMEOUT_MS 10
#define DEFAULT_STRING (64 * 1024)
#define DEFAULT_LIST 1000
#define DEFAULT_MAP 1000

#define BYTES_PER_STEP 16 /* string work costs one step per this many bytes */
#define CHECK_EVERY 64    /* steps between clock reads: cheap, yet timely */
#define VALUE_DEPTH 64    /* nesting of values compared for equality (input JSON can be deep) */
#define MSG_MAX 256       /* reasons are short; keys and strings quoted in them are cut */
#define QUOTE_MAX 64

/* ---- limits ---- */

void cel_limits_default(struct cel_limits *l)
{
	l->max_len = CEL_MAX_LEN;
	l->max_depth = DEFAULT_DEPTH;
	l->max_cost = DEFAULT_COST;
	l->timeout_ms = DEFAULT_TIMEOUT_MS;
	l->max_string = DEFAULT_STRING;
	l->max_list = DEFAULT_LIST;
	l->max_map = DEFAULT_MAP;
}

static void limits_resolve(const struct cel_limits *in, struct cel_limits *out)
{
	cel_limits_default(out);
	if (!in)
		return;
	if (in->max_len > 0)
		out->max_len = in->max_len < CEL_MAX_LEN ? in->max_len : CEL_MAX_LEN;
	if (in->max_depth > 0)
		out->max_depth = in->max_depth < CEL_MAX_DEPTH ? in->max_depth : CEL_MAX_DEPTH;
	if (in->max_cost > 0)
		out->max_cost = in->max_cost;
	if (in->timeout_ms > 0)
		out->timeout_ms = in->timeout_ms;
	if (in->max_string > 0)
		out->max_string = in->max_string;
	if (in->max_list > 0)
		out->max_list = in->max_list;
	if (in->max_map > 0)
		out->max_map = in->max_map;
}

/* ---- small helpers ---- */

static bool is_digit(int c) { return c >= '0' && c <= '9'; }
static bool is_alpha(int c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }
static bool is_alnum(int c) { return is_alpha(c) || is_digit(c); }
static int hexval(int c)
{
	if (is_digit(c))
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Copies at most QUOTE_MAX bytes of s for an error message, replacing control characters and
 * quotes so a reason stays one readable line. */
static const char *quote(char *out, size_t outsz, const char *s, size_t n)
{
	size_t o = 0;
	for (size_t i = 0; i < n && o + 4 < outsz; i++) {
		unsigned char ch = (unsigned char)s[i];
		if (o >= QUOTE_MAX) {
			memcpy(out + o, "...", 3);
			o += 3;
			break;
		}
		out[o++] = ch < 0x20 || ch == 0x7f || ch == '\'' ? '?' : (char)ch;
	}
	out[o] = '\0';
	return out;
}

/* 1-based line and column (in characters) of byte offset pos. */
static void line_col(const char *src, size_t len, size_t pos, int *line, int *col)
{
	*line = 1;
	*col = 1;
	for (size_t i = 0; i < pos && i < len; i++) {
		if (src[i] == '\n') {
			(*line)++;
			*col = 1;
		} else if (((unsigned char)src[i] & 0xc0) != 0x80) {
			(*col)++;
		}
	}
}

/* Writes "L:C: reason" (pos >= 0) or "reason" into out. */
static void format_err(char *out, size_t outsz, const char *src, size_t len, int pos,
		       const char *fmt, va_list ap) __attribute__((format(printf, 6, 0)));
static void format_err(char *out, size_t outsz, const char *src, size_t len, int pos,
		       const char *fmt, va_list ap)
{
	int n = 0;
	if (!out || outsz == 0)
		return;
	if (pos >= 0) {
		int line, col;
		line_col(src, len, (size_t)pos, &line, &col);
		n = snprintf(out, outsz, "%d:%d: ", line, col);
		if (n < 0 || (size_t)n >= outsz)
			return;
	}
	vsnprintf(out + n, outsz - (size_t)n, fmt, ap);
}

static void set_err(char *err, size_t errsz, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errsz, const char *fmt, ...)
{
	va_list ap;
	if (!err || errsz == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errsz, fmt, ap);
	va_end(ap);
}

/* ---- tokens ---- */

enum tok {
	T_EOF,
	T_INT,
	T_DOUBLE,
	T_STRING,
	T_IDENT,
	T_TRUE,
	T_FALSE,
	T_NULL,
	T_IN,
	T_LPAREN,
	T_RPAREN,
	T_LBRACKET,
	T_RBRACKET,
	T_LBRACE,
	T_RBRACE,
	T_DOT,
	T_COMMA,
	T_COLON,
	T_QUESTION,
	T_PLUS,
	T_MINUS,
	T_STAR,
	T_SLASH,
	T_PERCENT,
	T_NOT,
	T_EQ,
	T_NE,
	T_LT,
	T_LE,
	T_GT,
	T_GE,
	T_AND,
	T_OR,
};

static const char *const tok_text[] = {
	[T_EOF] = "end of expression",
	[T_INT] = "number",
	[T_DOUBLE] = "number",
	[T_STRING] = "string",
	[T_IDENT] = "identifier",
	[T_TRUE] = "'true'",
	[T_FALSE] = "'false'",
	[T_NULL] = "'null'",
	[T_IN] = "'in'",
	[T_LPAREN] = "'('",
	[T_RPAREN] = "')'",
	[T_LBRACKET] = "'['",
	[T_RBRACKET] = "']'",
	[T_LBRACE] = "'{'",
	[T_RBRACE] = "'}'",
	[T_DOT] = "'.'",
	[T_COMMA] = "','",
	[T_COLON] = "':'",
	[T_QUESTION] = "'?'",
	[T_PLUS] = "'+'",
	[T_MINUS] = "'-'",
	[T_STAR] = "'*'",
	[T_SLASH] = "'/'",
	[T_PERCENT] = "'%'",
	[T_NOT] = "'!'",
	[T_EQ] = "'=='",
	[T_NE] = "'!='",
	[T_LT] = "'<'",
	[T_LE] = "'<='",
	[T_GT] = "'>'",
	[T_GE] = "'>='",
	[T_AND] = "'&&'",
	[T_OR] = "'||'",
};

struct token {
	enum tok t;
	int pos, len; /* bytes in the source */
	uint64_t u;   /* T_INT magnitude (up to 2^63, for a negated INT64_MIN) */
	double d;     /* T_DOUBLE */
	char *s;      /* T_STRING decoded (owned, NUL-terminated), slen bytes */
	size_t slen;
};

/* ---- AST ---- */

enum nkind {
	N_LIT,
	N_IDENT,
	N_SELECT,
	N_INDEX,
	N_HAS,
	N_CALL,
	N_LIST,
	N_MAP,
	N_NOT,
	N_NEG,
	N_BIN,
	N_AND,
	N_OR,
	N_COND
};
enum fn { F_SIZE, F_INT, F_STRING, F_DOUBLE, F_STARTS, F_ENDS, F_CONTAINS };
enum binop { B_EQ, B_NE, B_LT, B_LE, B_GT, B_GE, B_IN, B_ADD, B_SUB, B_MUL, B_DIV, B_MOD };

static const char *const binop_text[] = { "==", "!=", "<", "<=", ">", ">=",
					  "in", "+",  "-", "*",  "/", "%" };
static const char *const fn_text[] = { "size",       "int",      "string",  "double",
				       "startsWith", "endsWith", "contains" };

struct node {
	enum nkind k;
	int pos;     /* byte offset reported in errors */
	int op;      /* enum binop or enum fn */
	int a, b, c; /* children: operand(s), condition/branches; -1 when unused */
	int *kids; /* list elements, map keys/values interleaved, call subject+args, &&/|| operands */
	int nkids;
	json_t *lit; /* N_LIT: the constant (owned) */
	char *name;  /* N_IDENT, N_SELECT: the name (owned) */
	int depth;
};

struct cel_program {
	struct node *nodes;
	int n, cap;
	int root;
	char *src; /* a copy, to turn byte offsets into line:column at evaluation */
	size_t len;
};

void cel_program_free(struct cel_program *p)
{
	if (!p)
		return;
	for (int i = 0; i < p->n; i++) {
		free(p->nodes[i].kids);
		free(p->nodes[i].name);
		json_decref(p->nodes[i].lit);
	}
	free(p->nodes);
	free(p->src);
	free(p);
}

/* ---- lexer and parser ---- */

struct parser {
	struct cel_program *p;
	const char *src;
	size_t len;
	struct token *toks;
	int ntok, cur;
	int nest, max_depth;
	int code; /* first error, negative errno */
	char *err;
	size_t errsz;
};

static int perr(struct parser *ps, int code, int pos, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static int perr(struct parser *ps, int code, int pos, const char *fmt, ...)
{
	va_list ap;
	if (ps->code)
		return -1; /* the first error is the one worth reporting */
	ps->code = code;
	va_start(ap, fmt);
	format_err(ps->err, ps->errsz, ps->src, ps->len, pos, fmt, ap);
	va_end(ap);
	return -1;
}

static struct token *tok_push(struct parser *ps, enum tok t, size_t pos, size_t len)
{
	struct token *tk;
	/* at most one token per source byte plus the end: allocated once, never grows */
	if (!ps->toks) {
		ps->toks = calloc(ps->len + 1, sizeof(*ps->toks));
		if (!ps->toks)
			return NULL;
	}
	tk = &ps->toks[ps->ntok++];
	tk->t = t;
	tk->pos = (int)pos;
	tk->len = (int)len;
	return tk;
}

static const char *const reserved[] = { "as",   "break",    "const",     "continue", "else",
					"for",  "function", "if",        "import",   "let",
					"loop", "package",  "namespace", "return",   "var",
					"void", "while" };

static int lex_number(struct parser *ps, size_t *ip)
{
	const char *s = ps->src;
	size_t n = ps->len, i = *ip, j = i;
	bool dbl = false, hex = false;
	uint64_t v = 0;
	struct token *tk;

	if (s[i] == '0' && i + 1 < n && (s[i + 1] == 'x' || s[i + 1] == 'X')) {
		hex = true;
		j = i + 2;
		while (j < n && hexval(s[j]) >= 0)
			j++;
		if (j == i + 2)
			return perr(ps, -EINVAL, (int)i, "invalid number literal");
	} else {
		while (j < n && is_digit(s[j]))
			j++;
		if (j + 1 < n && s[j] == '.' && is_digit(s[j + 1])) {
			dbl = true;
			j++;
			while (j < n && is_digit(s[j]))
				j++;
		}
		if (j < n && (s[j] == 'e' || s[j] == 'E')) {
			size_t k = j + 1;
			if (k < n && (s[k] == '+' || s[k] == '-'))
				k++;
			if (k >= n || !is_digit(s[k]))
				return perr(ps, -EINVAL, (int)i, "invalid number literal");
			dbl = true;
			j = k;
			while (j < n && is_digit(s[j]))
				j++;
		}
	}
	/* "1u", "2abc", "0x1g": CEL's unsigned ints are not in the subset, the rest is a typo */
	if (j < n && is_alnum(s[j]))
		return perr(ps, -EINVAL, (int)i, "invalid number literal");
	tk = tok_push(ps, dbl ? T_DOUBLE : T_INT, i, j - i);
	if (!tk)
		return perr(ps, -ENOMEM, -1, "out of memory");
	if (dbl) {
		char tmp[CEL_MAX_LEN + 1];
		char *end;
		memcpy(tmp, s + i, j - i);
		tmp[j - i] = '\0';
		tk->d = strtod(tmp, &end);
		if (!isfinite(tk->d))
			return perr(ps, -EINVAL, (int)i, "double literal out of range");
	} else {
		for (size_t k = hex ? i + 2 : i; k < j; k++) {
			unsigned dv = (unsigned)hexval(s[k]);
			unsigned base = hex ? 16 : 10;
			if (v > (UINT64_MAX - dv) / base)
				return perr(ps, -EINVAL, (int)i, "integer literal out of range");
			v = v * base + dv;
		}
		if (v > (uint64_t)INT64_MAX + 1)
			return perr(ps, -EINVAL, (int)i, "integer literal out of range");
		tk->u = v;
	}
	*ip = j;
	return 0;
}

static int put_utf8(struct buf *b, uint32_t cp)
{
	char o[4];
	size_t k = u8_encode(cp, o);
	return k ? buf_append(b, o, k) : -EINVAL;
}

static int lex_string(struct parser *ps, size_t *ip)
{
	const char *s = ps->src;
	size_t n = ps->len, i = *ip, j = i + 1;
	char q = s[i];
	struct buf b;
	struct token *tk;
	int r = 0;

	/* escapes only shrink text, so the source length bounds the decoded string */
	buf_init(&b, n);
	r = buf_append(&b, "", 0);
	while (r == 0) {
		char c;
		if (j >= n || s[j] == '\n' || s[j] == '\r') {
			buf_free(&b);
			return perr(ps, -EINVAL, (int)i, "unterminated string");
		}
		c = s[j];
		if (c == q) {
			j++;
			break;
		}
		if (c != '\\') {
			r = buf_append(&b, &c, 1);
			j++;
			continue;
		}
		if (j + 1 >= n) {
			buf_free(&b);
			return perr(ps, -EINVAL, (int)i, "unterminated string");
		}
		switch (s[j + 1]) {
		case 'n':
			r = buf_append(&b, "\n", 1);
			break;
		case 't':
			r = buf_append(&b, "\t", 1);
			break;
		case 'r':
			r = buf_append(&b, "\r", 1);
			break;
		case '\\':
			r = buf_append(&b, "\\", 1);
			break;
		case '\'':
			r = buf_append(&b, "'", 1);
			break;
		case '"':
			r = buf_append(&b, "\"", 1);
			break;
		case 'u': {
			uint32_t cp = 0;
			for (size_t k = j + 2; k < j + 6; k++) {
				int h = k < n ? hexval(s[k]) : -1;
				if (h < 0) {
					buf_free(&b);
					return perr(ps, -EINVAL, (int)j,
						    "invalid \\u escape: want 4 hex digits");
				}
				cp = cp << 4 | (uint32_t)h;
			}
			/* no NUL (strings stay C strings) and no lone surrogates (not valid UTF-8) */
			if (cp == 0 || (cp >= 0xd800 && cp <= 0xdfff)) {
				buf_free(&b);
				return perr(ps, -EINVAL, (int)j,
					    "invalid \\u escape: U+%04" PRIX32 " is not allowed",
					    cp);
			}
			r = put_utf8(&b, cp);
			j += 4;
			break;
		}
		default:
			buf_free(&b);
			if ((unsigned char)s[j + 1] >= 0x20 && (unsigned char)s[j + 1] < 0x7f)
				return perr(ps, -EINVAL, (int)j, "invalid escape sequence '\\%c'",
					    s[j + 1]);
			return perr(ps, -EINVAL, (int)j, "invalid escape sequence");
		}
		j += 2;
	}
	if (r < 0) {
		buf_free(&b);
		return perr(ps, -ENOMEM, -1, "out of memory");
	}
	tk = tok_push(ps, T_STRING, i, j - i);
	if (!tk) {
		buf_free(&b);
		return perr(ps, -ENOMEM, -1, "out of memory");
	}
	tk->s = b.data;
	tk->slen = b.len;
	*ip = j;
	return 0;
}

static int lex(struct parser *ps)
{
	const char *s = ps->src;
	size_t n = ps->len, i = 0;

	for (;;) {
		enum tok t;
		size_t w = 1;
		char c;
		/* whitespace and // comments */
		while (i < n) {
			if (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r') {
				i++;
			} else if (s[i] == '/' && i + 1 < n && s[i + 1] == '/') {
				while (i < n && s[i] != '\n')
					i++;
			} else {
				break;
			}
		}
		if (i >= n)
			return tok_push(ps, T_EOF, n, 0) ? 0
							 : perr(ps, -ENOMEM, -1, "out of memory");
		c = s[i];
		if (is_alpha(c)) {
			size_t j = i;
			while (j < n && is_alnum(s[j]))
				j++;
			t = T_IDENT;
			if (j - i == 4 && memcmp(s + i, "true", 4) == 0)
				t = T_TRUE;
			else if (j - i == 5 && memcmp(s + i, "false", 5) == 0)
				t = T_FALSE;
			else if (j - i == 4 && memcmp(s + i, "null", 4) == 0)
				t = T_NULL;
			else if (j - i == 2 && memcmp(s + i, "in", 2) == 0)
				t = T_IN;
			if (!tok_push(ps, t, i, j - i))
				return perr(ps, -ENOMEM, -1, "out of memory");
			i = j;
			continue;
		}
		if (is_digit(c) || (c == '.' && i + 1 < n && is_digit(s[i + 1]))) {
			if (lex_number(ps, &i) < 0)
				return -1;
			continue;
		}
		if (c == '\'' || c == '"') {
			if (lex_string(ps, &i) < 0)
				return -1;
			continue;
		}
		switch (c) {
		case '(':
			t = T_LPAREN;
			break;
		case ')':
			t = T_RPAREN;
			break;
		case '[':
			t = T_LBRACKET;
			break;
		case ']':
			t = T_RBRACKET;
			break;
		case '{':
			t = T_LBRACE;
			break;
		case '}':
			t = T_RBRACE;
			break;
		case '.':
			t = T_DOT;
			break;
		case ',':
			t = T_COMMA;
			break;
		case ':':
			t = T_COLON;
			break;
		case '?':
			t = T_QUESTION;
			break;
		case '+':
			t = T_PLUS;
			break;
		case '-':
			t = T_MINUS;
			break;
		case '*':
			t = T_STAR;
			break;
		case '/':
			t = T_SLASH;
			break;
		case '%':
			t = T_PERCENT;
			break;
		case '!':
			t = T_NOT;
			if (i + 1 < n && s[i + 1] == '=')
				t = T_NE, w = 2;
			break;
		case '=':
			if (i + 1 >= n || s[i + 1] != '=')
				return perr(ps, -EINVAL, (int)i,
					    "unexpected '=' (use '==' to compare)");
			t = T_EQ, w = 2;
			break;
		case '<':
			t = T_LT;
			if (i + 1 < n && s[i + 1] == '=')
				t = T_LE, w = 2;
			break;
		case '>':
			t = T_GT;
			if (i + 1 < n && s[i + 1] == '=')
				t = T_GE, w = 2;
			break;
		case '&':
			if (i + 1 >= n || s[i + 1] != '&')
				return perr(ps, -EINVAL, (int)i, "unexpected '&' (use '&&')");
			t = T_AND, w = 2;
			break;
		case '|':
			if (i + 1 >= n || s[i + 1] != '|')
				return perr(ps, -EINVAL, (int)i, "unexpected '|' (use '||')");
			t = T_OR, w = 2;
			break;
		default:
			if ((unsigned char)c > 0x20 && (unsigned char)c < 0x7f)
				return perr(ps, -EINVAL, (int)i, "unexpected character '%c'", c);
			return perr(ps, -EINVAL, (int)i, "unexpected character (byte 0x%02x)",
				    (unsigned char)c);
		}
		if (!tok_push(ps, t, i, w))
			return perr(ps, -ENOMEM, -1, "out of memory");
		i += w;
	}
}

static const struct token *peek(const struct parser *ps) { return &ps->toks[ps->cur]; }
static const struct token *peek2(const struct parser *ps)
{
	return &ps->toks[ps->cur + 1 < ps->ntok ? ps->cur + 1 : ps->ntok - 1];
}
static const struct token *next(struct parser *ps)
{
	const struct token *tk = &ps->toks[ps->cur];
	if (tk->t != T_EOF)
		ps->cur++;
	return tk;
}

static int unexpected(struct parser *ps, const struct token *tk)
{
	if (tk->t == T_IDENT)
		return perr(ps, -EINVAL, tk->pos, "unexpected identifier '%.*s'",
			    tk->len > QUOTE_MAX ? QUOTE_MAX : tk->len, ps->src + tk->pos);
	return perr(ps, -EINVAL, tk->pos, "unexpected %s", tok_text[tk->t]);
}

static int expect(struct parser *ps, enum tok t, const char *what)
{
	const struct token *tk = peek(ps);
	if (tk->t == t) {
		next(ps);
		return 0;
	}
	if (tk->t == T_EOF)
		return perr(ps, -EINVAL, tk->pos, "unexpected end of expression, expected %s",
			    what);
	if (tk->t == T_IDENT)
		return perr(ps, -EINVAL, tk->pos, "unexpected identifier '%.*s', expected %s",
			    tk->len > QUOTE_MAX ? QUOTE_MAX : tk->len, ps->src + tk->pos, what);
	return perr(ps, -EINVAL, tk->pos, "unexpected %s, expected %s", tok_text[tk->t], what);
}

static int node_new(struct parser *ps, enum nkind k, int pos)
{
	struct cel_program *p = ps->p;
	struct node *nd;
	if (p->n == p->cap) {
		int ncap = p->cap ? p->cap * 2 : 32;
		struct node *nn = realloc(p->nodes, (size_t)ncap * sizeof(*nn));
		if (!nn)
			return perr(ps, -ENOMEM, -1, "out of memory");
		p->nodes = nn;
		p->cap = ncap;
	}
	nd = &p->nodes[p->n];
	memset(nd, 0, sizeof(*nd));
	nd->k = k;
	nd->pos = pos;
	nd->a = nd->b = nd->c = -1;
	nd->depth = 1;
	return p->n++;
}

/* Computes a finished node's depth from its children and enforces max_depth, which bounds the
 * evaluator's recursion the way the nesting counter bounds the parser's. */
static int node_done(struct parser *ps, int idx)
{
	struct node *nd = &ps->p->nodes[idx];
	int d = 0, ch[3] = { nd->a, nd->b, nd->c };
	for (int i = 0; i < 3; i++)
		if (ch[i] >= 0 && ps->p->nodes[ch[i]].depth > d)
			d = ps->p->nodes[ch[i]].depth;
	for (int i = 0; i < nd->nkids; i++)
		if (ps->p->nodes[nd->kids[i]].depth > d)
			d = ps->p->nodes[nd->kids[i]].depth;
	nd->depth = d + 1;
	if (nd->depth > ps->max_depth)
		return perr(ps, -E2BIG, nd->pos, "expression nesting exceeds %d", ps->max_depth);
	return idx;
}

static int kid_add(struct parser *ps, int idx, int kid, int *cap)
{
	struct node *nd = &ps->p->nodes[idx];
	if (nd->nkids == *cap) {
		int ncap = *cap ? *cap * 2 : 4;
		int *nk = realloc(nd->kids, (size_t)ncap * sizeof(*nk));
		if (!nk)
			return perr(ps, -ENOMEM, -1, "out of memory");
		nd->kids = nk;
		*cap = ncap;
	}
	nd->kids[nd->nkids++] = kid;
	return 0;
}

static int parse_expr(struct parser *ps);

/* "(" [expr {"," expr}] ")" appended to node idx's kids; the "(" is already consumed. */
static int parse_args(struct parser *ps, int idx, int *cap)
{
	if (peek(ps)->t == T_RPAREN) {
		next(ps);
		return 0;
	}
	for (;;) {
		int e = parse_expr(ps);
		if (e < 0 || kid_add(ps, idx, e, cap) < 0)
			return -1;
		if (peek(ps)->t == T_COMMA) {
			next(ps);
			continue;
		}
		return expect(ps, T_RPAREN, "',' or ')'");
	}
}

static int lookup_fn(const char *name, size_t len, bool member)
{
	static const struct {
		const char *name;
		enum fn f;
		bool member, global;
	} fns[] = {
		{ "size", F_SIZE, true, true },          { "int", F_INT, false, true },
		{ "string", F_STRING, false, true },     { "double", F_DOUBLE, false, true },
		{ "startsWith", F_STARTS, true, false }, { "endsWith", F_ENDS, true, false },
		{ "contains", F_CONTAINS, true, false },
	};
	for (size_t i = 0; i < UTIL_ARRAY_SIZE(fns); i++)
		if (strlen(fns[i].name) == len && memcmp(fns[i].name, name, len) == 0 &&
		    (member ? fns[i].member : fns[i].global))
			return (int)fns[i].f;
	return -1;
}

/* A call whose name token is tk; recv is the receiver node for x.f(...) or -1 for f(...). */
static int parse_call(struct parser *ps, const struct token *tk, int recv)
{
	const char *name = ps->src + tk->pos;
	int f, idx, cap = 0, want;
	bool is_has = recv < 0 && tk->len == 3 && memcmp(name, "has", 3) == 0;

	f = is_has ? -1 : lookup_fn(name, (size_t)tk->len, recv >= 0);
	if (!is_has && f < 0)
		return perr(ps, -EINVAL, tk->pos, "unknown function '%.*s'",
			    tk->len > QUOTE_MAX ? QUOTE_MAX : tk->len, name);
	idx = node_new(ps, is_has ? N_HAS : N_CALL, tk->pos);
	if (idx < 0)
		return -1;
	ps->p->nodes[idx].op = f;
	if (recv >= 0 && kid_add(ps, idx, recv, &cap) < 0)
		return -1;
	if (parse_args(ps, idx, &cap) < 0)
		return -1;
	/* the receiver of x.f(...) counts as the first argument */
	want = is_has || f == F_INT || f == F_STRING || f == F_DOUBLE || f == F_SIZE ? 1 : 2;
	if (ps->p->nodes[idx].nkids != want) {
		int self = recv >= 0 ? 1 : 0;
		return perr(ps, -EINVAL, tk->pos, "%s() takes %d argument%s, got %d",
			    is_has ? "has" : fn_text[f], want - self, want - self == 1 ? "" : "s",
			    ps->p->nodes[idx].nkids - self);
	}
	if (is_has) {
		/* has() is a macro over a field selection, not a function of a value */
		struct node *nd = &ps->p->nodes[idx];
		if (ps->p->nodes[nd->kids[0]].k != N_SELECT)
			return perr(ps, -EINVAL, tk->pos,
				    "has() argument must be a field selection like a.b");
		nd->a = nd->kids[0];
		nd->nkids = 0;
	}
	return node_done(ps, idx);
}

static int parse_primary(struct parser *ps)
{
	const struct token *tk = next(ps);
	int idx, cap = 0;

	switch (tk->t) {
	case T_INT:
		if (tk->u > INT64_MAX)
			return perr(ps, -EINVAL, tk->pos, "integer literal out of range");
		idx = node_new(ps, N_LIT, tk->pos);
		if (idx < 0)
			return -1;
		ps->p->nodes[idx].lit = json_integer((json_int_t)tk->u);
		break;
	case T_DOUBLE:
		idx = node_new(ps, N_LIT, tk->pos);
		if (idx < 0)
			return -1;
		ps->p->nodes[idx].lit = json_real(tk->d);
		break;
	case T_STRING:
		idx = node_new(ps, N_LIT, tk->pos);
		if (idx < 0)
			return -1;
		ps->p->nodes[idx].lit = json_stringn_nocheck(tk->s, tk->slen);
		break;
	case T_TRUE:
	case T_FALSE:
	case T_NULL:
		idx = node_new(ps, N_LIT, tk->pos);
		if (idx < 0)
			return -1;
		ps->p->nodes[idx].lit = tk->t == T_TRUE    ? json_true()
					: tk->t == T_FALSE ? json_false()
							   : json_null();
		break;
	case T_IDENT:
		/* CEL reserves these as names; after a '.' they are ordinary field names (task.namespace) */
		for (size_t k = 0; k < UTIL_ARRAY_SIZE(reserved); k++)
			if (strlen(reserved[k]) == (size_t)tk->len &&
			    memcmp(reserved[k], ps->src + tk->pos, (size_t)tk->len) == 0)
				return perr(ps, -EINVAL, tk->pos, "'%s' is a reserved word",
					    reserved[k]);
		if (peek(ps)->t == T_LPAREN) {
			next(ps);
			return parse_call(ps, tk, -1);
		}
		idx = node_new(ps, N_IDENT, tk->pos);
		if (idx < 0)
			return -1;
		ps->p->nodes[idx].name = strndup(ps->src + tk->pos, (size_t)tk->len);
		if (!ps->p->nodes[idx].name)
			return perr(ps, -ENOMEM, -1, "out of memory");
		return node_done(ps, idx);
	case T_LPAREN:
		idx = parse_expr(ps);
		if (idx < 0 || expect(ps, T_RPAREN, "')'") < 0)
			return -1;
		return idx;
	case T_LBRACKET:
		idx = node_new(ps, N_LIST, tk->pos);
		if (idx < 0)
			return -1;
		while (peek(ps)->t != T_RBRACKET) {
			int e = parse_expr(ps);
			if (e < 0 || kid_add(ps, idx, e, &cap) < 0)
				return -1;
			if (peek(ps)->t != T_COMMA)
				break;
			next(ps); /* a trailing comma is allowed, as in CEL */
		}
		if (expect(ps, T_RBRACKET, "',' or ']'") < 0)
			return -1;
		return node_done(ps, idx);
	case T_LBRACE:
		idx = node_new(ps, N_MAP, tk->pos);
		if (idx < 0)
			return -1;
		while (peek(ps)->t != T_RBRACE) {
			int k = parse_expr(ps), v;
			if (k < 0 || kid_add(ps, idx, k, &cap) < 0 ||
			    expect(ps, T_COLON, "':'") < 0)
				return -1;
			v = parse_expr(ps);
			if (v < 0 || kid_add(ps, idx, v, &cap) < 0)
				return -1;
			if (peek(ps)->t != T_COMMA)
				break;
			next(ps);
		}
		if (expect(ps, T_RBRACE, "',' or '}'") < 0)
			return -1;
		return node_done(ps, idx);
	default:
		return unexpected(ps, tk);
	}
	if (!ps->p->nodes[idx].lit)
		return perr(ps, -ENOMEM, -1, "out of memory");
	return node_done(ps, idx);
}

/* primary { "." IDENT [ "(" args ")" ] | "[" expr "]" } */
static int parse_member(struct parser *ps)
{
	int e = parse_primary(ps);
	while (e >= 0) {
		const struct token *tk = peek(ps);
		if (tk->t == T_DOT) {
			const struct token *id;
			next(ps);
			id = next(ps);
			if (id->t != T_IDENT)
				return id->t == T_EOF
					       ? perr(ps, -EINVAL, id->pos,
						      "unexpected end of expression, expected a field name")
					       : perr(ps, -EINVAL, id->pos,
						      "unexpected %s, expected a field name",
						      tok_text[id->t]);
			if (peek(ps)->t == T_LPAREN) {
				next(ps);
				e = parse_call(ps, id, e);
				continue;
			}
			int idx = node_new(ps, N_SELECT, id->pos);
			if (idx < 0)
				return -1;
			ps->p->nodes[idx].a = e;
			ps->p->nodes[idx].name = strndup(ps->src + id->pos, (size_t)id->len);
			if (!ps->p->nodes[idx].name)
				return perr(ps, -ENOMEM, -1, "out of memory");
			e = node_done(ps, idx);
		} else if (tk->t == T_LBRACKET) {
			int idx, ix;
			next(ps);
			ix = parse_expr(ps);
			if (ix < 0 || expect(ps, T_RBRACKET, "']'") < 0)
				return -1;
			idx = node_new(ps, N_INDEX, tk->pos);
			if (idx < 0)
				return -1;
			ps->p->nodes[idx].a = e;
			ps->p->nodes[idx].b = ix;
			e = node_done(ps, idx);
		} else {
			break;
		}
	}
	return e;
}

/* {"!" | "-"} member. Iterative: the AST depth check stops long runs of operators. */
static int parse_unary(struct parser *ps)
{
	int ops[CEL_MAX_DEPTH + 1] = { 0 }, nops = 0, pos[CEL_MAX_DEPTH + 1] = { 0 }, e;

	while (peek(ps)->t == T_NOT || peek(ps)->t == T_MINUS) {
		const struct token *tk = next(ps);
		if (nops > ps->max_depth)
			return perr(ps, -E2BIG, tk->pos, "expression nesting exceeds %d",
				    ps->max_depth);
		ops[nops] = tk->t;
		pos[nops++] = tk->pos;
	}
	/* "-9223372036854775808" is a literal, not the negation of an out-of-range one */
	if (nops > 0 && ops[nops - 1] == T_MINUS && peek(ps)->t == T_INT && peek2(ps)->t != T_DOT &&
	    peek2(ps)->t != T_LBRACKET) {
		const struct token *tk = next(ps);
		e = node_new(ps, N_LIT, pos[nops - 1]);
		if (e < 0)
			return -1;
		/* tk->u <= 2^63, so the negation is in range */
		ps->p->nodes[e].lit = json_integer(tk->u > INT64_MAX ? INT64_MIN
								     : -(json_int_t)tk->u);
		if (!ps->p->nodes[e].lit)
			return perr(ps, -ENOMEM, -1, "out of memory");
		e = node_done(ps, e);
		nops--;
	} else {
		e = parse_member(ps);
	}
	while (e >= 0 && nops > 0) {
		int idx = node_new(ps, ops[nops - 1] == T_NOT ? N_NOT : N_NEG, pos[nops - 1]);
		if (idx < 0)
			return -1;
		ps->p->nodes[idx].a = e;
		e = node_done(ps, idx);
		nops--;
	}
	return e;
}

static int binary(struct parser *ps, int op, int pos, int l, int r)
{
	int idx;
	if (r < 0)
		return -1;
	idx = node_new(ps, N_BIN, pos);
	if (idx < 0)
		return -1;
	ps->p->nodes[idx].op = op;
	ps->p->nodes[idx].a = l;
	ps->p->nodes[idx].b = r;
	return node_done(ps, idx);
}

static int parse_mul(struct parser *ps)
{
	int e = parse_unary(ps);
	while (e >= 0) {
		const struct token *tk = peek(ps);
		int op = tk->t == T_STAR      ? B_MUL
			 : tk->t == T_SLASH   ? B_DIV
			 : tk->t == T_PERCENT ? B_MOD
					      : -1;
		if (op < 0)
			break;
		next(ps);
		e = binary(ps, op, tk->pos, e, parse_unary(ps));
	}
	return e;
}

static int parse_add(struct parser *ps)
{
	int e = parse_mul(ps);
	while (e >= 0) {
		const struct token *tk = peek(ps);
		int op = tk->t == T_PLUS ? B_ADD : tk->t == T_MINUS ? B_SUB : -1;
		if (op < 0)
			break;
		next(ps);
		e = binary(ps, op, tk->pos, e, parse_mul(ps));
	}
	return e;
}

static int parse_rel(struct parser *ps)
{
	int e = parse_add(ps);
	while (e >= 0) {
		const struct token *tk = peek(ps);
		int op;
		switch (tk->t) {
		case T_EQ:
			op = B_EQ;
			break;
		case T_NE:
			op = B_NE;
			break;
		case T_LT:
			op = B_LT;
			break;
		case T_LE:
			op = B_LE;
			break;
		case T_GT:
			op = B_GT;
			break;
		case T_GE:
			op = B_GE;
			break;
		case T_IN:
			op = B_IN;
			break;
		default:
			return e;
		}
		next(ps);
		e = binary(ps, op, tk->pos, e, parse_add(ps));
	}
	return e;
}

/* a && b && c (or ||) becomes one n-ary node: long chains stay shallow, and evaluation can
 * absorb an error in one operand when another decides the result. */
static int parse_logic(struct parser *ps, bool is_or)
{
	enum tok t = is_or ? T_OR : T_AND;
	int e = is_or ? parse_logic(ps, false) : parse_rel(ps), idx, cap = 0;

	if (e < 0 || peek(ps)->t != t)
		return e;
	idx = node_new(ps, is_or ? N_OR : N_AND, peek(ps)->pos);
	if (idx < 0 || kid_add(ps, idx, e, &cap) < 0)
		return -1;
	while (peek(ps)->t == t) {
		next(ps);
		e = is_or ? parse_logic(ps, false) : parse_rel(ps);
		if (e < 0 || kid_add(ps, idx, e, &cap) < 0)
			return -1;
	}
	return node_done(ps, idx);
}

/* or ["?" or ":" expr], with the nesting counter that bounds the parser's recursion */
static int parse_expr(struct parser *ps)
{
	int c, t, f, idx;
	const struct token *q;

	if (++ps->nest > ps->max_depth)
		return perr(ps, -E2BIG, peek(ps)->pos, "expression nesting exceeds %d",
			    ps->max_depth);
	c = parse_logic(ps, true);
	if (c < 0 || peek(ps)->t != T_QUESTION) {
		ps->nest--;
		return c;
	}
	q = next(ps);
	t = parse_logic(ps, true);
	if (t < 0 || expect(ps, T_COLON, "':'") < 0)
		return -1;
	f = parse_expr(ps);
	if (f < 0)
		return -1;
	idx = node_new(ps, N_COND, q->pos);
	if (idx < 0)
		return -1;
	ps->p->nodes[idx].a = c;
	ps->p->nodes[idx].b = t;
	ps->p->nodes[idx].c = f;
	ps->nest--;
	return node_done(ps, idx);
}

int cel_compile(const char *expr, const struct cel_limits *lim, struct cel_program **ret, char *err,
		size_t errsz)
{
	struct cel_limits l;
	struct parser ps = { .err = err, .errsz = errsz };
	struct cel_program *p;
	size_t len;
	int root;

	*ret = NULL;
	set_err(err, errsz, "%s", "");
	limits_resolve(lim, &l);
	if (!expr) {
		set_err(err, errsz, "no expression");
		return -EINVAL;
	}
	len = strnlen(expr, l.max_len + 1);
	if (len > l.max_len) {
		set_err(err, errsz, "expression longer than %zu bytes", l.max_len);
		return -E2BIG;
	}
	if (!u8_valid(expr, len)) {
		set_err(err, errsz, "expression is not valid UTF-8");
		return -EINVAL;
	}
	p = calloc(1, sizeof(*p));
	if (!p || !(p->src = strndup(expr, len))) {
		free(p);
		set_err(err, errsz, "out of memory");
		return -ENOMEM;
	}
	p->len = len;
	ps.p = p;
	ps.src = p->src;
	ps.len = len;
	ps.max_depth = l.max_depth;

	root = lex(&ps);
	if (root == 0) {
		if (ps.toks[0].t == T_EOF) {
			root = perr(&ps, -EINVAL, 0, "empty expression");
		} else {
			root = parse_expr(&ps);
			if (root >= 0 && peek(&ps)->t != T_EOF)
				root = unexpected(&ps, peek(&ps));
		}
	}
	for (int i = 0; i < ps.ntok; i++)
		free(ps.toks[i].s);
	free(ps.toks);
	if (root < 0) {
		int code = ps.code ? ps.code : -EINVAL;
		cel_program_free(p);
		return code;
	}
	p->root = root;
	*ret = p;
	return 0;
}

/* ---- evaluation ---- */

struct ectx {
	const struct cel_program *p;
	json_t *vars;
	struct cel_limits l;
	int64_t cost, next_check, deadline_ns;
	int code;   /* pending error: negative errno, 0 when none */
	bool fatal; /* a limit or allocation error: never absorbed by && / || */
	char msg[MSG_MAX];
};

static int64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static void *eerr(struct ectx *c, int code, int pos, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));
static void *eerr(struct ectx *c, int code, int pos, const char *fmt, ...)
{
	va_list ap;
	c->code = code;
	c->fatal = code != -EINVAL;
	va_start(ap, fmt);
	format_err(c->msg, sizeof(c->msg), c->p->src, c->p->len, pos, fmt, ap);
	va_end(ap);
	return NULL;
}

static void *enomem(struct ectx *c) { return eerr(c, -ENOMEM, -1, "out of memory"); }

/* Charges units steps; past max_cost or the deadline the evaluation stops. */
static int charge(struct ectx *c, int64_t units)
{
	if (units > c->l.max_cost - c->cost) {
		c->cost = c->l.max_cost;
		eerr(c, -E2BIG, -1, "cost limit %" PRId64 " exceeded", c->l.max_cost);
		return -1;
	}
	c->cost += units;
	if (c->cost >= c->next_check) {
		c->next_check = c->cost + CHECK_EVERY;
		if (mono_ns() > c->deadline_ns) {
			eerr(c, -ETIMEDOUT, -1, "evaluation timed out after %" PRId64 " ms",
			     c->l.timeout_ms);
			return -1;
		}
	}
	return 0;
}

static int charge_bytes(struct ectx *c, size_t n)
{
	return charge(c, 1 + (int64_t)(n / BYTES_PER_STEP));
}

static const char *tname(const json_t *v)
{
	switch (json_typeof(v)) {
	case JSON_OBJECT:
		return "map";
	case JSON_ARRAY:
		return "list";
	case JSON_STRING:
		return "string";
	case JSON_INTEGER:
		return "int";
	case JSON_REAL:
		return "double";
	case JSON_TRUE:
	case JSON_FALSE:
		return "bool";
	default:
		return "null";
	}
}

/* Three-way comparison of an int and a double without rounding the int; 2 means unordered (NaN
 * cannot come from jansson, but stay safe). */
static int cmp_int_double(int64_t i, double d)
{
	double t;
	int64_t ti;
	if (isnan(d))
		return 2;
	if (d >= 9223372036854775808.0)
		return -1;
	if (d < -9223372036854775808.0)
		return 1;
	ti = (int64_t)d; /* in range now: truncation toward zero is exact, and needs no libm */
	t = (double)ti;
	if (i != ti)
		return i < ti ? -1 : 1;
	return d > t ? -1 : d < t ? 1 : 0;
}

/* Numeric comparison across int and double (CEL's heterogeneous numbers); 2 = unordered. */
static int cmp_num(const json_t *a, const json_t *b)
{
	if (json_is_integer(a) && json_is_integer(b)) {
		json_int_t x = json_integer_value(a), y = json_integer_value(b);
		return x < y ? -1 : x > y;
	}
	if (json_is_integer(a))
		return cmp_int_double(json_integer_value(a), json_real_value(b));
	if (json_is_integer(b)) {
		int r = cmp_int_double(json_integer_value(b), json_real_value(a));
		return r == 2 ? 2 : -r;
	}
	double x = json_real_value(a), y = json_real_value(b);
	if (isnan(x) || isnan(y))
		return 2;
	return x < y ? -1 : x > y;
}

static int cmp_str(const json_t *a, const json_t *b)
{
	size_t la = json_string_length(a), lb = json_string_length(b);
	int r = memcmp(json_string_value(a), json_string_value(b), la < lb ? la : lb);
	if (r)
		return r < 0 ? -1 : 1;
	return la < lb ? -1 : la > lb;
}

/* CEL equality: values of different types are unequal, except int and double, which compare
 * numerically; lists and maps compare element by element. Returns 1, 0, or -1 with an error
 * set (cost, timeout, nesting). */
static int equal(struct ectx *c, json_t *a, json_t *b, int depth, int pos)
{
	if (charge(c, 1) < 0)
		return -1;
	if (json_is_number(a) && json_is_number(b))
		return cmp_num(a, b) == 0;
	if (json_typeof(a) != json_typeof(b))
		return 0;
	switch (json_typeof(a)) {
	case JSON_STRING:
		if (json_string_length(a) != json_string_length(b))
			return 0;
		if (charge_bytes(c, json_string_length(a)) < 0)
			return -1;
		return memcmp(json_string_value(a), json_string_value(b), json_string_length(a)) ==
		       0;
	case JSON_ARRAY:
		if (json_array_size(a) != json_array_size(b))
			return 0;
		if (depth >= VALUE_DEPTH) {
			eerr(c, -E2BIG, pos, "values nested deeper than %d cannot be compared",
			     VALUE_DEPTH);
			return -1;
		}
		for (size_t i = 0; i < json_array_size(a); i++) {
			int r = equal(c, json_array_get(a, i), json_array_get(b, i), depth + 1,
				      pos);
			if (r <= 0)
				return r;
		}
		return 1;
	case JSON_OBJECT: {
		const char *k;
		size_t klen;
		json_t *va;
		if (json_object_size(a) != json_object_size(b))
			return 0;
		if (depth >= VALUE_DEPTH) {
			eerr(c, -E2BIG, pos, "values nested deeper than %d cannot be compared",
			     VALUE_DEPTH);
			return -1;
		}
		json_object_keylen_foreach(a, k, klen, va) {
			json_t *vb = json_object_getn(b, k, klen);
			int r;
			if (!vb)
				return 0;
			r = equal(c, va, vb, depth + 1, pos);
			if (r <= 0)
				return r;
		}
		return 1;
	}
	default:
		return 1; /* same type among null, true, false */
	}
}

static json_t *eval(struct ectx *c, int idx);

static json_t *new_int(struct ectx *c, int64_t v)
{
	json_t *r = json_integer(v);
	return r ? r : enomem(c);
}

static json_t *new_real(struct ectx *c, int pos, double v)
{
	json_t *r;
	/* jansson holds finite doubles only, and CEL conditions never need inf or NaN */
	if (!isfinite(v))
		return eerr(c, -EINVAL, pos, "double overflow");
	r = json_real(v);
	return r ? r : enomem(c);
}

static json_t *new_str(struct ectx *c, int pos, const char *s, size_t n)
{
	json_t *r;
	if (n > c->l.max_string)
		return eerr(c, -E2BIG, pos, "string exceeds %zu bytes", c->l.max_string);
	r = json_stringn_nocheck(s, n);
	return r ? r : enomem(c);
}

static json_t *select_field(struct ectx *c, const struct node *n, json_t *base)
{
	json_t *v;
	if (!json_is_object(base))
		return eerr(c, -EINVAL, n->pos, "cannot select field '%s' from %s", n->name,
			    tname(base));
	v = json_object_get(base, n->name);
	if (!v)
		return eerr(c, -EINVAL, n->pos, "no such key '%s'", n->name);
	return json_incref(v);
}

/* base[ix]; with absent != NULL a missing key or index sets *absent instead of failing (has()). */
static json_t *index_value(struct ectx *c, const struct node *n, json_t *base, json_t *ix,
			   bool *absent)
{
	char q[QUOTE_MAX + 8];
	json_t *v;
	if (json_is_array(base)) {
		json_int_t i;
		if (!json_is_integer(ix))
			return eerr(c, -EINVAL, n->pos, "list index must be an int, got %s",
				    tname(ix));
		i = json_integer_value(ix);
		if (i < 0 || (uint64_t)i >= json_array_size(base)) {
			if (absent) {
				*absent = true;
				return NULL;
			}
			return eerr(c, -EINVAL, n->pos, "index %" PRId64 " out of range (size %zu)",
				    (int64_t)i, json_array_size(base));
		}
		return json_incref(json_array_get(base, (size_t)i));
	}
	if (json_is_object(base)) {
		if (!json_is_string(ix))
			return eerr(c, -EINVAL, n->pos, "map key must be a string, got %s",
				    tname(ix));
		v = json_object_getn(base, json_string_value(ix), json_string_length(ix));
		if (!v) {
			if (absent) {
				*absent = true;
				return NULL;
			}
			return eerr(
				c, -EINVAL, n->pos, "no such key '%s'",
				quote(q, sizeof(q), json_string_value(ix), json_string_length(ix)));
		}
		return json_incref(v);
	}
	return eerr(c, -EINVAL, n->pos, "cannot index %s", tname(base));
}

/* The operand chain of has(): like eval, but a missing key, an out-of-range index or a null in
 * the middle make the whole chain absent instead of an error, so
 * has(tasks.a.output.changed) is simply false when the task wrote no such output. */
static json_t *eval_chain(struct ectx *c, int idx, bool *absent)
{
	const struct node *n = &c->p->nodes[idx];
	json_t *base, *ix, *v = NULL;

	if (n->k != N_SELECT && n->k != N_INDEX)
		return eval(c, idx);
	if (charge(c, 1) < 0)
		return NULL;
	base = eval_chain(c, n->a, absent);
	if (!base)
		return NULL;
	if (json_is_null(base)) {
		json_decref(base);
		*absent = true;
		return NULL;
	}
	if (n->k == N_SELECT) {
		if (json_is_object(base) && !json_object_get(base, n->name))
			*absent = true;
		else
			v = select_field(c, n, base);
	} else {
		ix = eval(c, n->b);
		if (ix)
			v = index_value(c, n, base, ix, absent);
		json_decref(ix);
	}
	json_decref(base);
	return v;
}

static json_t *eval_has(struct ectx *c, const struct node *n)
{
	const struct node *sel = &c->p->nodes[n->a];
	bool absent = false;
	json_t *base = eval_chain(c, sel->a, &absent), *r;

	if (!base)
		return absent ? json_false() : NULL;
	if (json_is_null(base)) {
		json_decref(base);
		return json_false();
	}
	if (!json_is_object(base)) {
		r = eerr(c, -EINVAL, sel->pos, "has() cannot test field '%s' of %s", sel->name,
			 tname(base));
	} else {
		r = json_object_get(base, sel->name) ? json_true() : json_false();
	}
	json_decref(base);
	return r;
}

/* && and || over n operands. CEL's commutative rules: any false (for &&) or true (for ||)
 * decides, even past an error in another operand; otherwise the first error is reported.
 * Limit errors are fatal and never absorbed. */
static json_t *eval_logic(struct ectx *c, const struct node *n)
{
	bool is_and = n->k == N_AND;
	int saved_code = 0;
	char saved[MSG_MAX];

	for (int i = 0; i < n->nkids; i++) {
		json_t *v = eval(c, n->kids[i]);
		bool b;
		if (v && !json_is_boolean(v)) {
			eerr(c, -EINVAL, c->p->nodes[n->kids[i]].pos,
			     "operand of %s must be a bool, got %s", is_and ? "&&" : "||",
			     tname(v));
			json_decref(v);
			v = NULL;
		}
		if (!v) {
			if (c->fatal)
				return NULL;
			if (!saved_code) {
				saved_code = c->code;
				memcpy(saved, c->msg, sizeof(saved));
			}
			c->code = 0;
			continue;
		}
		b = json_is_true(v);
		json_decref(v);
		if (b != is_and)
			return json_boolean(b);
	}
	if (saved_code) {
		c->code = saved_code;
		memcpy(c->msg, saved, sizeof(saved));
		return NULL;
	}
	return json_boolean(is_and);
}

static json_t *eval_list(struct ectx *c, const struct node *n)
{
	json_t *arr;
	if ((size_t)n->nkids > c->l.max_list)
		return eerr(c, -E2BIG, n->pos, "list exceeds %zu elements", c->l.max_list);
	arr = json_array();
	if (!arr)
		return enomem(c);
	for (int i = 0; i < n->nkids; i++) {
		json_t *v = eval(c, n->kids[i]);
		if (!v) {
			json_decref(arr);
			return NULL;
		}
		if (json_array_append_new(arr, v) < 0) {
			json_decref(arr);
			return enomem(c);
		}
	}
	return arr;
}

static json_t *eval_map(struct ectx *c, const struct node *n)
{
	char q[QUOTE_MAX + 8];
	json_t *obj;
	if ((size_t)n->nkids / 2 > c->l.max_map)
		return eerr(c, -E2BIG, n->pos, "map exceeds %zu entries", c->l.max_map);
	obj = json_object();
	if (!obj)
		return enomem(c);
	for (int i = 0; i + 1 < n->nkids; i += 2) {
		const struct node *kn = &c->p->nodes[n->kids[i]];
		json_t *k = eval(c, n->kids[i]), *v;
		if (!k)
			goto fail;
		/* JSON objects hold string keys only; the subset follows */
		if (!json_is_string(k)) {
			eerr(c, -EINVAL, kn->pos, "map key must be a string, got %s", tname(k));
			json_decref(k);
			goto fail;
		}
		if (json_object_getn(obj, json_string_value(k), json_string_length(k))) {
			eerr(c, -EINVAL, kn->pos, "duplicate map key '%s'",
			     quote(q, sizeof(q), json_string_value(k), json_string_length(k)));
			json_decref(k);
			goto fail;
		}
		v = eval(c, n->kids[i + 1]);
		if (!v) {
			json_decref(k);
			goto fail;
		}
		if (json_object_setn_new_nocheck(obj, json_string_value(k), json_string_length(k),
						 v) < 0) {
			json_decref(k);
			enomem(c);
			goto fail;
		}
		json_decref(k);
	}
	return obj;
fail:
	json_decref(obj);
	return NULL;
}

/* Shortest decimal text that reads back as the same double, like Go's FormatFloat(d, 'g', -1). */
static void format_double(double d, char *out, size_t outsz)
{
	for (int prec = 1; prec <= 17; prec++) {
		snprintf(out, outsz, "%.*g", prec, d);
		if (strtod(out, NULL) == d)
			return;
	}
}

static json_t *conv_int(struct ectx *c, const struct node *n, json_t *v)
{
	char q[QUOTE_MAX + 8];
	if (json_is_integer(v))
		return json_incref(v);
	if (json_is_real(v)) {
		double d = json_real_value(v);
		if (!(d >= -9223372036854775808.0 && d < 9223372036854775808.0))
			return eerr(c, -EINVAL, n->pos, "integer overflow converting %g to int", d);
		return new_int(c, (int64_t)d); /* truncates toward zero, as CEL does */
	}
	if (json_is_string(v)) {
		const char *s = json_string_value(v);
		size_t len = json_string_length(v), i = 0;
		bool neg = false;
		uint64_t u = 0;
		if (charge_bytes(c, len) < 0)
			return NULL;
		if (i < len && (s[i] == '-' || s[i] == '+'))
			neg = s[i++] == '-';
		if (i == len)
			goto bad;
		for (; i < len; i++) {
			if (!is_digit(s[i]) || u > (UINT64_MAX - 9) / 10)
				goto bad;
			u = u * 10 + (uint64_t)(s[i] - '0');
		}
		if (u > (uint64_t)INT64_MAX + (neg ? 1 : 0))
			goto bad;
		return new_int(c, neg ? (u > INT64_MAX ? INT64_MIN : -(int64_t)u) : (int64_t)u);
bad:
		return eerr(c, -EINVAL, n->pos, "cannot convert '%s' to int",
			    quote(q, sizeof(q), s, len));
	}
	return eerr(c, -EINVAL, n->pos, "no such overload: int(%s)", tname(v));
}

static json_t *conv_double(struct ectx *c, const struct node *n, json_t *v)
{
	char q[QUOTE_MAX + 8];
	if (json_is_real(v))
		return json_incref(v);
	if (json_is_integer(v))
		return new_real(c, n->pos, (double)json_integer_value(v));
	if (json_is_string(v)) {
		const char *s = json_string_value(v);
		size_t len = json_string_length(v);
		char tmp[128], *end;
		double d;
		bool digit = false;
		if (charge_bytes(c, len) < 0)
			return NULL;
		/* decimal notation only: no hex floats, inf or nan, no surrounding spaces */
		if (len == 0 || len >= sizeof(tmp))
			goto bad;
		for (size_t i = 0; i < len; i++) {
			if (is_digit(s[i]))
				digit = true;
			else if (!strchr("+-.eE", s[i]) || s[i] == '\0')
				goto bad;
		}
		if (!digit)
			goto bad;
		memcpy(tmp, s, len);
		tmp[len] = '\0';
		d = strtod(tmp, &end);
		if (*end != '\0' || !isfinite(d))
			goto bad;
		return new_real(c, n->pos, d);
bad:
		return eerr(c, -EINVAL, n->pos, "cannot convert '%s' to double",
			    quote(q, sizeof(q), s, len));
	}
	return eerr(c, -EINVAL, n->pos, "no such overload: double(%s)", tname(v));
}

static json_t *conv_string(struct ectx *c, const struct node *n, json_t *v)
{
	char tmp[64];
	if (json_is_string(v))
		return json_incref(v);
	if (json_is_integer(v)) {
		snprintf(tmp, sizeof(tmp), "%" PRId64, (int64_t)json_integer_value(v));
		return new_str(c, n->pos, tmp, strlen(tmp));
	}
	if (json_is_real(v)) {
		format_double(json_real_value(v), tmp, sizeof(tmp));
		return new_str(c, n->pos, tmp, strlen(tmp));
	}
	if (json_is_boolean(v))
		return new_str(c, n->pos, json_is_true(v) ? "true" : "false",
			       json_is_true(v) ? 4 : 5);
	return eerr(c, -EINVAL, n->pos, "no such overload: string(%s)", tname(v));
}

static json_t *eval_call(struct ectx *c, const struct node *n)
{
	json_t *args[2] = { NULL, NULL }, *r = NULL;

	for (int i = 0; i < n->nkids && i < 2; i++) {
		args[i] = eval(c, n->kids[i]);
		if (!args[i])
			goto out;
	}
	switch ((enum fn)n->op) {
	case F_SIZE:
		if (json_is_string(args[0])) {
			if (charge_bytes(c, json_string_length(args[0])) == 0)
				r = new_int(c, (int64_t)u8_count(json_string_value(args[0]),
								 json_string_length(args[0])));
		} else if (json_is_array(args[0])) {
			r = new_int(c, (int64_t)json_array_size(args[0]));
		} else if (json_is_object(args[0])) {
			r = new_int(c, (int64_t)json_object_size(args[0]));
		} else {
			r = eerr(c, -EINVAL, n->pos, "no such overload: size(%s)", tname(args[0]));
		}
		break;
	case F_INT:
		r = conv_int(c, n, args[0]);
		break;
	case F_DOUBLE:
		r = conv_double(c, n, args[0]);
		break;
	case F_STRING:
		r = conv_string(c, n, args[0]);
		break;
	case F_STARTS:
	case F_ENDS:
	case F_CONTAINS: {
		const char *s, *p;
		size_t ls, lp;
		bool hit;
		if (!json_is_string(args[0]) || !json_is_string(args[1])) {
			r = eerr(c, -EINVAL, n->pos, "no such overload: %s.%s(%s)", tname(args[0]),
				 fn_text[n->op], tname(args[1]));
			break;
		}
		s = json_string_value(args[0]), ls = json_string_length(args[0]);
		p = json_string_value(args[1]), lp = json_string_length(args[1]);
		if (charge_bytes(c, n->op == F_CONTAINS ? ls + lp : lp) < 0)
			break;
		if (lp > ls)
			hit = false;
		else if (n->op == F_STARTS)
			hit = memcmp(s, p, lp) == 0;
		else if (n->op == F_ENDS)
			hit = memcmp(s + ls - lp, p, lp) == 0;
		else
			hit = lp == 0 || memmem(s, ls, p, lp) != NULL;
		r = json_boolean(hit);
		break;
	}
	}
out:
	json_decref(args[0]);
	json_decref(args[1]);
	return r;
}

static json_t *arith_int(struct ectx *c, const struct node *n, int64_t x, int64_t y)
{
	int64_t r;
	switch (n->op) {
	case B_ADD:
		if (__builtin_add_overflow(x, y, &r))
			goto overflow;
		break;
	case B_SUB:
		if (__builtin_sub_overflow(x, y, &r))
			goto overflow;
		break;
	case B_MUL:
		if (__builtin_mul_overflow(x, y, &r))
			goto overflow;
		break;
	case B_DIV:
	case B_MOD:
		if (y == 0)
			return eerr(c, -EINVAL, n->pos,
				    n->op == B_DIV ? "division by zero" : "modulus by zero");
		if (x == INT64_MIN && y == -1)
			goto overflow;
		r = n->op == B_DIV ? x / y : x % y;
		break;
	default:
		return NULL;
	}
	return new_int(c, r);
overflow:
	return eerr(c, -EINVAL, n->pos, "integer overflow");
}

static json_t *arith(struct ectx *c, const struct node *n, json_t *l, json_t *r)
{
	if (json_is_integer(l) && json_is_integer(r))
		return arith_int(c, n, json_integer_value(l), json_integer_value(r));
	if (json_is_real(l) && json_is_real(r) && n->op != B_MOD) {
		double x = json_real_value(l), y = json_real_value(r);
		switch (n->op) {
		case B_ADD:
			return new_real(c, n->pos, x + y);
		case B_SUB:
			return new_real(c, n->pos, x - y);
		case B_MUL:
			return new_real(c, n->pos, x * y);
		default:
			if (y == 0)
				return eerr(c, -EINVAL, n->pos, "division by zero");
			return new_real(c, n->pos, x / y);
		}
	}
	if (n->op == B_ADD && json_is_string(l) && json_is_string(r)) {
		size_t a = json_string_length(l), b = json_string_length(r);
		char *s;
		json_t *v;
		if (a + b > c->l.max_string)
			return eerr(c, -E2BIG, n->pos, "string exceeds %zu bytes", c->l.max_string);
		if (charge_bytes(c, a + b) < 0)
			return NULL;
		s = malloc(a + b + 1);
		if (!s)
			return enomem(c);
		memcpy(s, json_string_value(l), a);
		memcpy(s + a, json_string_value(r), b);
		v = new_str(c, n->pos, s, a + b);
		free(s);
		return v;
	}
	if (n->op == B_ADD && json_is_array(l) && json_is_array(r)) {
		size_t a = json_array_size(l), b = json_array_size(r);
		json_t *v;
		if (a + b > c->l.max_list)
			return eerr(c, -E2BIG, n->pos, "list exceeds %zu elements", c->l.max_list);
		if (charge(c, 1 + (int64_t)(a + b)) < 0)
			return NULL;
		v = json_array();
		if (!v || json_array_extend(v, l) < 0 || json_array_extend(v, r) < 0) {
			json_decref(v);
			return enomem(c);
		}
		return v;
	}
	return eerr(c, -EINVAL, n->pos, "no such overload: %s %s %s", tname(l), binop_text[n->op],
		    tname(r));
}

static json_t *eval_in(struct ectx *c, const struct node *n, json_t *l, json_t *r)
{
	if (json_is_array(r)) {
		for (size_t i = 0; i < json_array_size(r); i++) {
			int e = equal(c, l, json_array_get(r, i), 0, n->pos);
			if (e < 0)
				return NULL;
			if (e)
				return json_true();
		}
		return json_false();
	}
	if (json_is_object(r)) {
		/* maps have string keys only, so any other key is simply not in it */
		if (!json_is_string(l))
			return json_false();
		if (charge_bytes(c, json_string_length(l)) < 0)
			return NULL;
		return json_boolean(
			json_object_getn(r, json_string_value(l), json_string_length(l)) != NULL);
	}
	return eerr(c, -EINVAL, n->pos, "no such overload: %s in %s", tname(l), tname(r));
}

static json_t *eval_bin(struct ectx *c, const struct node *n)
{
	json_t *l = eval(c, n->a), *r = NULL, *v = NULL;
	int cmp;

	if (!l)
		return NULL;
	r = eval(c, n->b);
	if (!r)
		goto out;
	switch (n->op) {
	case B_EQ:
	case B_NE:
		cmp = equal(c, l, r, 0, n->pos);
		if (cmp >= 0)
			v = json_boolean((cmp == 1) == (n->op == B_EQ));
		break;
	case B_LT:
	case B_LE:
	case B_GT:
	case B_GE:
		if (json_is_number(l) && json_is_number(r)) {
			cmp = cmp_num(l, r);
		} else if (json_is_string(l) && json_is_string(r)) {
			if (charge_bytes(c, json_string_length(l) < json_string_length(r)
						    ? json_string_length(l)
						    : json_string_length(r)) < 0)
				break;
			cmp = cmp_str(l, r);
		} else if (json_is_boolean(l) && json_is_boolean(r)) {
			cmp = json_is_true(l) - json_is_true(r);
		} else {
			v = eerr(c, -EINVAL, n->pos, "no such overload: %s %s %s", tname(l),
				 binop_text[n->op], tname(r));
			break;
		}
		if (cmp == 2)
			v = json_false();
		else if (n->op == B_LT)
			v = json_boolean(cmp < 0);
		else if (n->op == B_LE)
			v = json_boolean(cmp <= 0);
		else if (n->op == B_GT)
			v = json_boolean(cmp > 0);
		else
			v = json_boolean(cmp >= 0);
		break;
	case B_IN:
		v = eval_in(c, n, l, r);
		break;
	default:
		v = arith(c, n, l, r);
		break;
	}
out:
	json_decref(l);
	json_decref(r);
	return v;
}

/* Recursion depth is the AST depth, which the parser capped at max_depth <= CEL_MAX_DEPTH. */
static json_t *eval(struct ectx *c, int idx)
{
	const struct node *n = &c->p->nodes[idx];
	json_t *v, *r;

	if (charge(c, 1) < 0)
		return NULL;
	switch (n->k) {
	case N_LIT:
		return json_incref(n->lit);
	case N_IDENT:
		v = c->vars ? json_object_get(c->vars, n->name) : NULL;
		if (!v)
			return eerr(c, -EINVAL, n->pos, "unknown variable '%s'", n->name);
		return json_incref(v);
	case N_SELECT:
		v = eval(c, n->a);
		if (!v)
			return NULL;
		r = select_field(c, n, v);
		json_decref(v);
		return r;
	case N_INDEX: {
		json_t *ix;
		v = eval(c, n->a);
		if (!v)
			return NULL;
		ix = eval(c, n->b);
		r = ix ? index_value(c, n, v, ix, NULL) : NULL;
		json_decref(ix);
		json_decref(v);
		return r;
	}
	case N_HAS:
		return eval_has(c, n);
	case N_CALL:
		return eval_call(c, n);
	case N_LIST:
		return eval_list(c, n);
	case N_MAP:
		return eval_map(c, n);
	case N_NOT:
		v = eval(c, n->a);
		if (!v)
			return NULL;
		r = json_is_boolean(v)
			    ? json_boolean(!json_is_true(v))
			    : eerr(c, -EINVAL, n->pos, "no such overload: !%s", tname(v));
		json_decref(v);
		return r;
	case N_NEG:
		v = eval(c, n->a);
		if (!v)
			return NULL;
		if (json_is_integer(v))
			r = json_integer_value(v) == INT64_MIN
				    ? eerr(c, -EINVAL, n->pos, "integer overflow")
				    : new_int(c, -json_integer_value(v));
		else if (json_is_real(v))
			r = new_real(c, n->pos, -json_real_value(v));
		else
			r = eerr(c, -EINVAL, n->pos, "no such overload: -%s", tname(v));
		json_decref(v);
		return r;
	case N_BIN:
		return eval_bin(c, n);
	case N_AND:
	case N_OR:
		return eval_logic(c, n);
	case N_COND:
		v = eval(c, n->a);
		if (!v)
			return NULL;
		if (!json_is_boolean(v)) {
			eerr(c, -EINVAL, n->pos, "condition of ?: must be a bool, got %s",
			     tname(v));
			json_decref(v);
			return NULL;
		}
		r = eval(c, json_is_true(v) ? n->b : n->c);
		json_decref(v);
		return r;
	}
	return eerr(c, -EINVAL, n->pos, "internal error: bad node");
}

int cel_eval(const struct cel_program *p, json_t *vars, const struct cel_limits *lim, json_t **ret,
	     char *err, size_t errsz)
{
	struct ectx c = { .p = p, .vars = json_is_object(vars) ? vars : NULL };
	json_t *v;

	*ret = NULL;
	set_err(err, errsz, "%s", "");
	if (!p) {
		set_err(err, errsz, "no program");
		return -EINVAL;
	}
	limits_resolve(lim, &c.l);
	c.next_check = CHECK_EVERY;
	/* a timeout beyond any sane value saturates instead of overflowing */
	c.deadline_ns = mono_ns() + (c.l.timeout_ms > INT64_MAX / 4000000
					     ? INT64_MAX / 4
					     : c.l.timeout_ms * 1000000);
	v = eval(&c, p->root);
	if (!v) {
		set_err(err, errsz, "%s", c.msg);
		return c.code ? c.code : -EINVAL;
	}
	*ret = v;
	return 0;
}

int cel_eval_bool(const struct cel_program *p, json_t *vars, const struct cel_limits *l, int *ret,
		  char *err, size_t errsz)
{
	json_t *v;
	int r;

	*ret = 0;
	r = cel_eval(p, vars, l, &v, err, errsz);
	if (r < 0)
		return r;
	if (!json_is_boolean(v)) {
		set_err(err, errsz, "condition must evaluate to a bool, got %s", tname(v));
		json_decref(v);
		return -EINVAL;
	}
	*ret = json_is_true(v);
	json_decref(v);
	return 0;
}
