/* validate: Kubernetes name, label and quantity syntax (see validate.h). */
#include "k8s/validate.h"

#include <string.h>

static bool is_lower_alnum(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static bool is_alnum(char c)
{
	return is_lower_alnum(c) || (c >= 'A' && c <= 'Z');
}

static bool is_digit(char c)
{
	return c >= '0' && c <= '9';
}

/* DNS-1123 label over @n bytes of @s (no length cap here). */
static bool label_span(const char *s, size_t n)
{
	if (n == 0 || !is_lower_alnum(s[0]) || !is_lower_alnum(s[n - 1]))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!is_lower_alnum(s[i]) && s[i] != '-')
			return false;
	return true;
}

bool k8s_is_dns1123_label(const char *s)
{
	size_t n = strlen(s);

	return n <= 63 && label_span(s, n);
}

/* DNS-1123 subdomain over @n bytes of @s. */
static bool subdomain_span(const char *s, size_t n)
{
	size_t start = 0;

	if (n == 0 || n > 253)
		return false;
	for (size_t i = 0; i <= n; i++) {
		if (i == n || s[i] == '.') {
			if (!label_span(s + start, i - start))
				return false;
			start = i + 1;
		}
	}
	return true;
}

bool k8s_is_dns1123_subdomain(const char *s)
{
	return subdomain_span(s, strlen(s));
}

bool k8s_is_dns1035_label(const char *s)
{
	return k8s_is_dns1123_label(s) && s[0] >= 'a' && s[0] <= 'z';
}

/* ([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9] over @n bytes, at most 63. */
static bool name_part(const char *s, size_t n)
{
	if (n == 0 || n > 63 || !is_alnum(s[0]) || !is_alnum(s[n - 1]))
		return false;
	for (size_t i = 0; i < n; i++)
		if (!is_alnum(s[i]) && s[i] != '-' && s[i] != '_' &&
		    s[i] != '.')
			return false;
	return true;
}

bool k8s_is_qualified_name(const char *s)
{
	const char *slash = strchr(s, '/');

	if (!slash)
		return name_part(s, strlen(s));
	if (strchr(slash + 1, '/'))
		return false;
	return subdomain_span(s, (size_t)(slash - s)) &&
	       name_part(slash + 1, strlen(slash + 1));
}

bool k8s_is_label_value(const char *s)
{
	size_t n = strlen(s);

	return n == 0 || name_part(s, n);
}

bool k8s_is_env_var_name(const char *s)
{
	if (!*s || is_digit(s[0]))
		return false;
	for (; *s; s++)
		if (!is_alnum(*s) && *s != '-' && *s != '.' && *s != '_')
			return false;
	return true;
}

bool k8s_is_port_name(const char *s)
{
	size_t n = strlen(s);
	bool letter = false;

	if (n == 0 || n > 15 || s[0] == '-' || s[n - 1] == '-' ||
	    strstr(s, "--"))
		return false;
	for (size_t i = 0; i < n; i++) {
		if (!is_lower_alnum(s[i]) && s[i] != '-')
			return false;
		if (s[i] >= 'a' && s[i] <= 'z')
			letter = true;
	}
	return letter;
}

bool k8s_is_quantity(const char *s)
{
	static const char *const suffixes[] = {
	    "",	 "n", "u",  "m",  "k",	"M",  "G",  "T",
	    "P", "E", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei",
	};
	size_t digits = 0;

	if (*s == '+' || *s == '-')
		s++;
	while (is_digit(*s))
		s++, digits++;
	if (*s == '.') {
		s++;
		while (is_digit(*s))
			s++, digits++;
	}
	if (digits == 0)
		return false;
	if (*s == 'e' || *s == 'E') {
		const char *e = s + 1;

		if (*e == '+' || *e == '-')
			e++;
		if (is_digit(*e)) {
			while (is_digit(*e))
				e++;
			return *e == '\0';
		}
		/* "E" alone is the exa suffix, handled below. */
	}
	for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++)
		if (!strcmp(s, suffixes[i]))
			return true;
	return false;
}

bool k8s_is_resource_name(const char *s)
{
	if (strchr(s, '/'))
		return k8s_is_qualified_name(s);
	if (!strcmp(s, "cpu") || !strcmp(s, "memory") ||
	    !strcmp(s, "ephemeral-storage"))
		return true;
	if (!strncmp(s, "hugepages-", 10))
		return k8s_is_quantity(s + 10) && s[10] != '-' && s[10] != '+';
	return false;
}

const char *k8s_dns1123_label_problem(const char *s)
{
	size_t n = strlen(s);

	if (n == 0)
		return "must not be empty";
	if (n > 63)
		return "must be no more than 63 characters";
	if (strchr(s, '.') && k8s_is_dns1123_subdomain(s))
		return "must not contain dots";
	return "a lowercase RFC 1123 label must consist of lower case "
	       "alphanumeric characters or '-', and must start and end with "
	       "an alphanumeric character (e.g. 'my-name',  or '123-abc')";
}
